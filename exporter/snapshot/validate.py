"""Never publish what the chain did not say: the checks between a read and its publication.

Pure functions over literal values, no I/O. Three layers, each raising
``InvalidRead(rule, detail)``:

- ``check_read``: what no honest node of this chain can serve: a malformed
  head, values out of their type's range, sizes beyond the chain's bounds,
  and the rules every write path keeps on live subnets (a ChildKeys set has
  at most 5 children, no self or duplicate child, proportions summing to at
  most u64::MAX, none on root; a root subnet exists; root stake within the
  TAO supply). Everything else real storage can hold (ParentKeys not
  mirroring ChildKeys, takes above MaxChildkeyTake, a swapped pending list
  naming its parent or a child twice, a duplicate hotkey in Keys, a permit
  without Keys, see ``anomalies``) is published, computed as the chain
  computes it, and flagged;
- ``check_successor`` and ``ReadGate``: the step from the last good read.
  The block never goes back; a read in which more than half of the subnets,
  permit holders, child edges or read stake vanished at once is *held back*
  and accepted only when the next read (the next refresh, or another
  endpoint in the same refresh) confirms it;
- ``check_snapshot``: what is about to be rendered has no duplicate series
  and no impossible number.

The chain reader runs the first two inside the read, so the endpoint that
said it counts as failed and the session tries the next one; the refresh
runs ``check_snapshot`` after building. ``InvalidRead`` is a ``ValueError``,
so code that does not know it takes it for a decoding failure; code that
does (the refresh, the session's ``classify``) labels it ``invalid``.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from itertools import compress, repeat
from operator import eq, itemgetter
from typing import Callable, Iterable, Optional

from exporter.config import ScopeConfig
from exporter.snapshot.model import ChainRead, Link, Snapshot
from exporter.snapshot.scope import registered_uids, tracked_candidates
from exporter.snapshot.units import RAO_PER_UNIT, U64_MAX

U16_MAX = 2**16 - 1

# The chain's own limits.
MAX_CHILDREN = 5  # per parent and subnet (do_schedule_children: TooManyChildren)
MAX_NETUIDS = 4096  # netuids in use stay far below this; u16 allows 65536
MAX_UIDS = 4096  # MaxAllowedUids bound: ValidatorPermit has one entry per uid
TAO_SUPPLY_RAO = 21_000_000 * RAO_PER_UNIT  # no root stake exceeds the TAO supply
# What a missing AccountId decodes to (ValueQuery default): never a registered hotkey.
ZERO_ACCOUNT = "5C4hrfjw9DjXZTzV3MwzrrAr9P1MJhSrvWGWqi1eSuyUpnhM"  # ss58(bytes(32), 42)

# One step from the last good read: a measure that lost more than this share
# is held back for confirmation, once it was at least MIN_COUNT (tiny test
# chains legitimately lose 2 of 3 edges).
MAX_LOSS = 0.5
MIN_COUNT = 4

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


# -- one read on its own ---------------------------------------------------------


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


# -- one step from the last good read ----------------------------------------------


# Blocks come one a slot: Aura's slot is 12 s on subtensor, and a block's Timestamp.Now lies in
# its slot, so from a block stamped t to one stamped t' at most (t' - t) / 12 s + 1 blocks were
# made. SLACK_BLOCKS is a margin on that bound; CLOCK_MARGIN_MS is how far a node's clock may
# run ahead of this machine's (NTP keeps both within a second or so; ten minutes is generous).
BLOCK_MS = 12_000
SLACK_BLOCKS = 5
CLOCK_MARGIN_MS = 600_000
# The header number is a u32 on subtensor; u32::MAX itself is 1,600 years of 12 s blocks.
MAX_BLOCK_NUMBER = 2**32 - 2


def blocks_possible(elapsed_ms: int) -> int:
    """The most blocks a chain of 12 s slots can have made in ``elapsed_ms`` (with the slack)."""
    return max(0, elapsed_ms) // BLOCK_MS + 1 + SLACK_BLOCKS


def check_successor(last: ChainRead, read: ChainRead) -> None:
    """Finalized blocks only move forward, a finalized block never changes, and no more blocks
    came between two reads than their timestamps leave slots for."""
    if read.block < last.block:
        raise InvalidRead("block_went_back", f"block {read.block} after block {last.block} was published")
    if read.block == last.block and read.block_hash.lower() != last.block_hash.lower():
        raise InvalidRead("block_hash_changed", f"block {read.block} has hash {read.block_hash}, was {last.block_hash}")
    if read.timestamp_ms < last.timestamp_ms:
        raise InvalidRead("timestamp_went_back", f"Timestamp.Now {read.timestamp_ms} after {last.timestamp_ms}")
    possible = blocks_possible(read.timestamp_ms - last.timestamp_ms)
    if read.block - last.block > possible:
        raise InvalidRead("block_ahead_of_timestamps",
                          f"block {read.block} is {read.block - last.block} blocks after block {last.block}, whose "
                          f"timestamps {(read.timestamp_ms - last.timestamp_ms) / 1000:.0f} s apart leave room for {possible}")


def stake_keys(read: ChainRead, scope: ScopeConfig, tracked: Optional[Iterable[tuple[str, int]]] = None) -> set[tuple[str, int]]:
    """The (hotkey, netuid) whose TotalHotkeyAlpha a read asks for: every registered uid's
    hotkey and every tracked pair, and their parents, on their subnet and root. ``tracked``:
    the read's ``tracked_candidates``, when the caller already has them."""
    keys: set[tuple[str, int]] = set()
    pairs = {(h, n) for h, n, _ in registered_uids(read)}
    pairs.update(tracked_candidates(read, scope.watched_hotkeys) if tracked is None else tracked)
    for hotkey, netuid in pairs:
        for who in (hotkey, *(parent for _, parent in read.parents.get((hotkey, netuid), ()))):
            keys.update(((who, netuid), (who, 0)))
    return keys


def step_problem(before: ChainRead, after: ChainRead, scope: ScopeConfig, before_keys: Optional[set] = None,
                 after_keys: Optional[set] = None) -> Optional[tuple[str, str]]:
    """(rule, detail) when more than MAX_LOSS of something vanished from ``before`` to ``after``, else None.

    Counted: subnets, permit holders, child edges, and the stake of the keys
    both reads asked for (a validator leaving scope takes its parents' stake
    out of the read, which is no loss). ``*_keys``: the reads' ``stake_keys``,
    when already known (~40 ms each at mainnet scale).
    """
    if before_keys is None:
        before_keys = stake_keys(before, scope)
    if after_keys is None:
        after_keys = stake_keys(after, scope)
    common = before_keys if before_keys is after_keys else before_keys & after_keys
    pairs = (
        ("subnets", len(before.netuids), len(after.netuids), MIN_COUNT),
        ("validators", _permit_holders(before), _permit_holders(after), MIN_COUNT),
        ("edges", _edges(before), _edges(after), MIN_COUNT),
        ("stake", _stake_in(before, common), _stake_in(after, common), 1),
    )
    for name, was, now, floor in pairs:
        if was >= floor and now < was * (1 - MAX_LOSS):
            return f"{name}_dropped", f"{name} fell from {was} to {now} in one step (block {before.block} -> {after.block})"
    return None


def _stake_in(read: ChainRead, keys: set) -> int:
    """The read's stake summed over ``keys``; over all of it (in C) when it holds no other key."""
    if read.stake.keys() <= keys:
        return sum(read.stake.values())
    return sum(read.stake.get(k, 0) for k in keys)


def _permit_holders(read: ChainRead) -> int:
    return sum(sum(map(bool, permits)) for permits in read.permits.values())


def _edges(read: ChainRead) -> int:
    return sum(len(links) for links in read.children.values())


class ReadGate:
    """Admits reads one after another: invariants, then the step from the last admitted read.

    A read that is implausible next to the last good one is held back (raises
    with ``held``); the next read confirms it when it agrees with the held
    one both ways, or supersedes it when it is plausible next to the last good
    one. Either way the read admitted becomes the new last good read.

    Against this machine's clock (``clock``, unix seconds): no Timestamp.Now beyond it (with
    ``CLOCK_MARGIN_MS``), and no head further ahead of the last good read than the slots since
    that read's timestamp allow. A read refused for either never becomes the last good read, so a
    forged number cannot make every honest read after it look like one going back.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.last_good: Optional[ChainRead] = None
        self.held: Optional[ChainRead] = None
        self._last_keys: set = set()  # stake_keys of last_good
        self._held_keys: set = set()

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def check_head(self, block: object, block_hash: object,
                   recorded: Optional[tuple[Optional[int], Optional[int]]] = None) -> None:
        """The finalized head alone, before anything is read at it (so a forged number costs no reads).

        ``recorded``: (block, Timestamp.Now in ms) of the last block history recorded, the
        reference while no read was admitted yet (after a restart). A head further from it than
        the clock allows is refused too: it would size the events read since that block."""
        check_block(block, block_hash)
        assert isinstance(block, int)
        if block > MAX_BLOCK_NUMBER:
            raise InvalidRead("block_number", f"header number {block} is past the chain's u32 block numbers")
        last = self.last_good
        if last is not None and block < last.block:
            raise InvalidRead("block_went_back", f"block {block} after block {last.block} was published")
        if last is not None:
            reference, since_ms, what = last.block, last.timestamp_ms, "the last good read"
        elif recorded is not None and recorded[0] is not None and recorded[1] is not None:
            reference, since_ms, what = recorded[0], recorded[1], "the last block history recorded"
        else:
            return
        possible = blocks_possible(self.now_ms() + CLOCK_MARGIN_MS - since_ms)
        if block - reference > possible:
            raise InvalidRead("block_ahead_of_clock",
                              f"block {block} is {block - reference} blocks after block {reference}, {what}; "
                              f"the clock leaves room for {possible} since its timestamp")

    def admit(self, read: ChainRead, scope: ScopeConfig, keys: Optional[set] = None,
              also: Optional[Callable[[], None]] = None) -> None:
        """``keys``: the read's ``stake_keys``, when the reader already has them (~0.2 s at mainnet scale).
        ``also``: a last check of what came with the read (its events), run once the read itself passed."""
        now_ms = self.now_ms()
        if read.timestamp_ms > now_ms + CLOCK_MARGIN_MS:
            raise InvalidRead("timestamp_ahead_of_clock",
                              f"Timestamp.Now {read.timestamp_ms} at block {read.block} is "
                              f"{(read.timestamp_ms - now_ms) / 1000:.0f} s ahead of this machine's clock")
        check_read(read, self.last_good)
        if keys is None:
            keys = stake_keys(read, scope)
        last = self.last_good
        if last is not None:
            check_successor(last, read)
            problem = step_problem(last, read, scope, self._last_keys, keys)
            if problem is not None and not self._confirms(read, scope, keys):
                self.held, self._held_keys = read, keys
                raise InvalidRead(*problem, held=True)
        if also is not None:
            also()
        self.last_good, self._last_keys = read, keys
        self.held, self._held_keys = None, set()

    def _confirms(self, read: ChainRead, scope: ScopeConfig, keys: set) -> bool:
        held = self.held
        if held is None or read.block < held.block:
            return False
        return (step_problem(held, read, scope, self._held_keys, keys) is None
                and step_problem(read, held, scope, keys, self._held_keys) is None)


# -- what is about to be rendered ----------------------------------------------------


class PassedValidators:
    """The validators one caller's last ``check_snapshot`` passed (the refresher keeps one):
    a ``ValidatorState`` is frozen and its rules read nothing else, so the very object passes
    again. The objects are held, so no other object can have their ids meanwhile."""

    __slots__ = ("ids", "objects")

    def __init__(self) -> None:
        self.ids: frozenset[int] = frozenset()
        self.objects: tuple = ()


def check_snapshot(snapshot: Snapshot, passed: Optional[PassedValidators] = None) -> None:
    """No duplicate series, no number the chain's arithmetic cannot produce, in what is
    exported and in what history records. ``passed``: what the caller's last check passed, not
    checked again (with the stake memo, all but the few validators whose inputs moved), then
    replaced by what this one passed."""
    _unique("validator", [(v.hotkey, v.netuid) for v in snapshot.validators])
    _unique("edge", [(e.parent, e.child, e.netuid) for e in snapshot.edges])
    _unique("pending set", [(p.parent, p.netuid) for p in snapshot.pending])
    _unique("identity", [i.hotkey for i in snapshot.identities])
    _unique("subnet", [s.netuid for s in snapshot.subnets])
    _unique("tracked validator", [(v.hotkey, v.netuid) for v in snapshot.tracked])
    # The tracked validators (what history records) include the exported ones
    # when the builder made the snapshot; a hand-made one may have only either.
    exported = set(map(id, snapshot.validators))
    validators = (*snapshot.validators, *(t for t in snapshot.tracked if id(t) not in exported))
    skip = passed.ids if passed is not None else frozenset()
    for v in validators:
        if id(v) not in skip:
            _check_validator(v)
    if passed is not None:
        passed.ids, passed.objects = frozenset(map(id, validators)), validators


def _check_validator(v) -> None:
    where = f"validator {v.hotkey} on netuid {v.netuid}"
    numbers = (v.own_alpha, v.root_tao, v.to_children_alpha, v.from_parents_alpha, v.inherited_alpha,
               v.inherited_root_tao, v.stake_weight, v.childkey_take, v.stored_childkey_take)
    if not all(math.isfinite(x) and x >= 0 for x in numbers):
        raise InvalidRead("impossible_number", f"{where}: a negative or non-finite amount")
    if v.to_children_alpha > v.own_alpha + 1:
        raise InvalidRead("gives_more_than_it_owns",
                          f"{where}: gives {v.to_children_alpha:.0f} rao of {v.own_alpha} own to children")
    # A u16 of 65535: any take, above a lowered MaxChildkeyTake included, is at most 1. Parents are
    # not bounded (ParentKeys may list any number, summing far above one), children are (ChildKeys).
    if v.childkey_take > 1 or v.stored_childkey_take > v.childkey_take:
        raise InvalidRead("impossible_number", f"{where}: take ratio {v.childkey_take} (stored {v.stored_childkey_take})")
    if v.children > MAX_CHILDREN:
        raise InvalidRead("too_many_children", f"{where}: {v.children} children")


def _unique(what: str, keys: list) -> None:
    if len(set(keys)) == len(keys):  # the usual case, decided in C
        return
    seen = set()
    for key in keys:
        if key in seen:
            raise InvalidRead("duplicate_series", f"{what} {key} twice")
        seen.add(key)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "..."
