"""What no honest node of this chain can serve, checked on one read alone; ``InvalidRead`` says which rule broke.

``check_read``: a malformed head, values out of their type's range, sizes
beyond the chain's bounds, and the rules every write path keeps on live
subnets (a ChildKeys set has at most 5 children, no self or duplicate child,
proportions summing to at most u64::MAX, none on root; a root subnet exists;
root stake within the TAO supply). Everything else real storage can hold
(ParentKeys not mirroring ChildKeys, takes above MaxChildkeyTake, a swapped
pending list naming its parent or a child twice, a duplicate hotkey in Keys, a
permit without Keys, see ``anomalies``) is published, computed as the chain
computes it, and flagged.

``InvalidRead`` is a ``ValueError``, so code that does not know it takes it
for a decoding failure; code that does (the refresh, ``chain.read_failure``'s
``classify``) labels it ``invalid``.
"""

from __future__ import annotations

import re
from collections import Counter
from itertools import compress, repeat
from operator import eq, itemgetter
from typing import Iterable, Optional

from exporter.snapshot.model import ChainRead, Link
from exporter.snapshot.units import RAO_PER_UNIT, U64_MAX

U16_MAX = 2**16 - 1

# The chain's own limits.
MAX_CHILDREN = 5  # per parent and subnet (do_schedule_children: TooManyChildren)
MAX_NETUIDS = 4096  # netuids in use stay far below this; u16 allows 65536
MAX_UIDS = 4096  # MaxAllowedUids bound: ValidatorPermit has one entry per uid
TAO_SUPPLY_RAO = 21_000_000 * RAO_PER_UNIT  # no root stake exceeds the TAO supply
# What a missing AccountId decodes to (ValueQuery default): never a registered hotkey.
ZERO_ACCOUNT = "5C4hrfjw9DjXZTzV3MwzrrAr9P1MJhSrvWGWqi1eSuyUpnhM"  # ss58(bytes(32), 42)

_BLOCK_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
_DETAIL_CHARS = 240


class InvalidRead(ValueError):
    """A read (or snapshot) the chain could not have produced; never published or recorded.

    ``rule`` is a short stable name of the broken rule (for logs and tests),
    ``detail`` says where; ``held`` marks a read held back for confirmation
    rather than refused outright.
    """

    def __init__(self, rule: str, detail: str, *, held: bool = False):
        detail = detail if len(detail) <= _DETAIL_CHARS else detail[:_DETAIL_CHARS] + "..."
        self.rule, self.detail, self.held = rule, detail, held
        super().__init__(f"{rule}: {detail}" + (" (held back, needs confirmation)" if held else ""))


def check_block(block: object, block_hash: object) -> None:
    """The finalized head: a block after genesis and a 32-byte hash as 0x + 64 hex digits."""
    check_block_hash(block_hash)
    if isinstance(block, bool) or not isinstance(block, int) or block <= 0:
        raise InvalidRead("block_number", f"header number {_short(block)} is not a block after genesis")


def check_block_hash(block_hash: object) -> None:
    if not isinstance(block_hash, str) or not _BLOCK_HASH.fullmatch(block_hash):
        raise InvalidRead("block_hash_malformed", f"finalized head {_short(block_hash)} is not 0x + 64 hex digits")


def check_read(read: ChainRead, checked: Optional[ChainRead] = None) -> None:
    """Every rule no state of the chain can break, on one read; raises ``InvalidRead`` naming the first broken.

    ``checked``: a read that passed before (the last admitted one). A part equal to its part
    (the child sets, the parent lists, the pending sets: between two refreshes nearly always)
    passed the same checks already, so it is not walked again.
    """
    check_block(read.block, read.block_hash)
    if read.timestamp_ms <= 0:
        raise InvalidRead("timestamp", f"Timestamp.Now is {read.timestamp_ms} at block {read.block}")
    _check_subnets(read)
    _check_takes(read)
    if checked is None or read.children != checked.children:
        for (parent, netuid), links in read.children.items():
            _check_child_set(f"ChildKeys[{parent}, {netuid}]", parent, netuid, links)
    if checked is None or read.pending != checked.pending:
        for (netuid, parent), (links, _cooldown) in read.pending.items():
            # A swap rewrites pending lists old -> new with no self or duplicate check: the
            # chain drops the one and collapses the other when it applies the set (flagged).
            _check_child_set(f"PendingChildKeys[{netuid}, {parent}]", parent, netuid, links, swapped=True)
    if checked is None or read.parents != checked.parents:
        _check_parents(read)
    _check_stakes(read)


def _check_stakes(read: ChainRead) -> None:
    amounts = read.stake.values()
    # the root entries' largest, picked in C: netuid 0 is the second part of the key
    root_max = max(compress(amounts, map(eq, map(itemgetter(1), read.stake), repeat(0))), default=0)
    if amounts and (min(amounts) >= 0 and max(amounts) <= U64_MAX) and root_max <= TAO_SUPPLY_RAO:
        return  # the usual read, checked in bulk; otherwise find the first offender to name it
    for (hotkey, netuid), amount in read.stake.items():
        if amount < 0 or amount > U64_MAX:
            raise InvalidRead("value_out_of_range", f"TotalHotkeyAlpha[{hotkey}, {netuid}] = {amount}")
        if netuid == 0 and amount > TAO_SUPPLY_RAO:
            raise InvalidRead("stake_above_supply", f"root stake of {hotkey} is {amount} rao, above the 21M TAO supply")


def _check_subnets(read: ChainRead) -> None:
    if any(not 0 <= n < MAX_NETUIDS for n in read.netuids):
        raise InvalidRead("netuid_out_of_range", f"netuids {_short(sorted(read.netuids)[-3:])} (bound {MAX_NETUIDS})")
    if 0 not in read.netuids:
        raise InvalidRead("no_root_subnet", f"NetworksAdded lists {len(read.netuids)} subnets and not root (netuid 0)")
    for netuid, permits in read.permits.items():
        if len(permits) > MAX_UIDS:
            raise InvalidRead("permits_too_long", f"ValidatorPermit[{netuid}] has {len(permits)} uids (bound {MAX_UIDS})")


def _check_takes(read: ChainRead) -> None:
    """A take is a u16: any value of it is a state the chain can hold (the sudo setters store any
    bound and touch no stored take), so only the type's range is checked."""
    bounds = (read.min_take, read.max_take, *read.takes.values(), *(read.min_take_per_subnet or {}).values())
    if min(bounds) >= 0 and max(bounds) <= U16_MAX:  # decided in C
        return
    for where, take in (("MinChildkeyTake", read.min_take), ("MaxChildkeyTake", read.max_take),
                        *((f"ChildkeyTake[{h}, {n}]", t) for (h, n), t in read.takes.items()),
                        *((f"MinChildkeyTakePerSubnet[{n}]", t) for n, t in (read.min_take_per_subnet or {}).items())):
        if not 0 <= take <= U16_MAX:
            raise InvalidRead("value_out_of_range", f"{where} = {take}")


def _check_child_set(where: str, parent: str, netuid: int, links: Iterable[Link], swapped: bool = False) -> None:
    """The rules every write of a child set keeps; ``swapped``: a pending set, which a hotkey
    swap may have left naming its parent or a child twice (the swap keeps each proportion, so
    the count and the sum stay within bounds)."""
    links = tuple(links)
    if netuid == 0 and links:
        raise InvalidRead("children_on_root", f"{where}: the chain has no child keys on root")
    if len(links) > MAX_CHILDREN:
        raise InvalidRead("too_many_children", f"{where}: {len(links)} children (the chain allows {MAX_CHILDREN})")
    _check_proportions(where, links)
    children = [child for _, child in links]
    if not swapped and parent in children:
        raise InvalidRead("self_child", f"{where}: the parent is its own child")
    if not swapped and len(set(children)) != len(children):
        twice = next(c for c, n in Counter(children).items() if n > 1)
        raise InvalidRead("duplicate_child", f"{where}: {twice} appears twice")
    total = sum(p for p, _ in links)
    if total > U64_MAX:
        raise InvalidRead("proportions_exceed_one", f"{where}: proportions sum to {total / U64_MAX:.6g} x u64::MAX")


def _check_proportions(where: str, links: tuple[Link, ...]) -> None:
    for proportion, _ in links:
        if not 0 <= proportion <= U64_MAX:
            raise InvalidRead("value_out_of_range", f"{where}: proportion {proportion}")


def _check_parents(read: ChainRead) -> None:
    """Only the proportions' range: ParentKeys may list more than 5 parents summing far above
    u64::MAX (each a share of that parent's stake), a parent twice after a swap, and need not
    mirror ChildKeys (leftovers of swaps, a dissolution's cleanup): the chain reads it as it is."""
    for (child, netuid), links in read.parents.items():
        _check_proportions(f"ParentKeys[{child}, {netuid}]", tuple(links))


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "..."
