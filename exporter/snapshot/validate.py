"""Never publish what the chain did not say: the step from the last good read, and the ``ReadGate``.

Pure functions over literal values, no I/O. Three layers, each raising
``InvalidRead(rule, detail)``:

- ``read_rules.check_read``: what no honest node of this chain can serve, on
  one read alone;
- ``check_successor`` and ``ReadGate`` (here): the step from the last good read.
  The block never goes back; a read in which more than half of the subnets,
  permit holders, child edges or read stake vanished at once is *held back*
  and accepted only when the next read (the next refresh, or another
  endpoint in the same refresh) confirms it;
- ``snapshot_check.check_snapshot``: what is about to be rendered has no
  duplicate series and no impossible number.

The chain reader runs the first two inside the read (``ReadGate.admit``), so
the endpoint that said it counts as failed and the session tries the next one;
the refresh runs ``check_snapshot`` after building.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable, Optional

from exporter.config import ScopeConfig
from exporter.snapshot.model import ChainRead
from exporter.snapshot.read_rules import InvalidRead, check_block, check_read
from exporter.snapshot.scope import registered_uids, tracked_candidates

# One step from the last good read: a measure that lost more than this share
# is held back for confirmation, once it was at least MIN_COUNT (tiny test
# chains legitimately lose 2 of 3 edges).
MAX_LOSS = 0.5
MIN_COUNT = 4

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
        the clock allows is refused too: it would size the events read since that block. A head
        behind it is refused as one going back: an endpoint that lags (a node still syncing) would
        otherwise undo, in the metrics and in history, changes already recorded."""
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
            if block < reference:
                raise InvalidRead("block_went_back", f"block {block} is behind block {reference}, the last block "
                                  "history recorded: this endpoint lags behind the chain (or the history file is "
                                  "another chain's)")
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
