"""What stages 2 and 3 of a read ask for, kept from read to read, and those stages fetched ahead.

Stage 2 asks for every uid of every subnet (the sizes stage 1 read), stage 3 for the stakes,
takes and coldkeys of every registered uid, tracked validator and parent (what stage 2 read).
Between two refreshes a minute apart these plans are nearly always the last read's: each is
kept with everything it was derived from and handed out again, the very same object, when
that is equal. The same object is what lets the key cache find its storage keys at once and
``ReadAhead`` know that a stage fetched with the last plan fetched the right keys.
"""

from __future__ import annotations

import asyncio
from itertools import compress
from typing import Any, Callable, Optional

from exporter.config import ScopeConfig
from exporter.snapshot.model import ChainRead, frozen
from exporter.snapshot.scope import tracked_candidates
from exporter.snapshot.read_rules import MAX_UIDS, ZERO_ACCOUNT, InvalidRead
from exporter.snapshot.validate import stake_keys

UidPlan = tuple[list, list, list]  # params lists: every (netuid, uid), (netuid, watched hotkey), (netuid,)


class StakePlan:
    """Stage 3's keys: stakes, takes and coldkeys, sorted, and as the params lists to ask for."""

    def __init__(self, keys: set, stake_list: list, take_list: list, owners: list):
        self.keys = keys
        self.stake_list, self.stake_params = stake_list, [list(k) for k in stake_list]
        self.take_list, self.take_params = take_list, [list(k) for k in take_list]
        self.owners, self.owner_params = owners, [[h] for h in owners]


class ReadPlans:
    """The plans of one reader's reads, each with what it was derived from (used by one read at a time)."""

    def __init__(self) -> None:
        self._uids: Optional[tuple[tuple, UidPlan]] = None
        self._stakes: Optional[tuple[tuple, StakePlan]] = None
        self._hotkeys: Optional[tuple[tuple, Any]] = None
        self._derived: dict[str, tuple[list, Any]] = {}  # by item: (scanned rows, mapping)

    @property
    def last_uids(self) -> Optional[UidPlan]:
        return None if self._uids is None else self._uids[1]

    @property
    def last_stakes(self) -> Optional[StakePlan]:
        return None if self._stakes is None else self._stakes[1]

    def uids(self, read: ChainRead, scope: ScopeConfig) -> UidPlan:
        """Stage 2's params lists: every uid of every subnet, watched hotkeys on every subnet,
        the subnets; the last read's very lists when the subnets and their sizes are the same."""
        counts = tuple(_uid_count(read, n) for n in read.netuids if n != 0)  # refuses impossible sizes
        inputs = (read.netuids, counts, tuple(w.hotkey for w in scope.watch))
        if self._uids is not None and self._uids[0] == inputs:
            return self._uids[1]
        subnets = [n for n in read.netuids if n != 0]
        plan = ([[n, uid] for n, count in zip(subnets, counts) for uid in range(count)],
                [[n, w.hotkey] for n in read.netuids for w in scope.watch],
                [[n] for n in subnets])
        self._uids = (inputs, plan)
        return plan

    def stakes(self, read: ChainRead, scope: ScopeConfig) -> StakePlan:
        """Stage 3's plan: every registered uid and every tracked pair, their parents, on their
        subnet and root; the last read's when the uids, permits and links are the same."""
        inputs = (read.netuids, read.permits, read.hotkeys, read.watched_uids, read.children, read.parents, scope)
        if self._stakes is not None and self._stakes[0] == inputs:
            return self._stakes[1]
        tracked = tracked_candidates(read, scope.watched_hotkeys)
        keys = stake_keys(read, scope, tracked)
        plan = StakePlan(keys, sorted(keys), sorted(tracked), sorted({hotkey for hotkey, _ in tracked}))
        self._stakes = (inputs, plan)
        return plan

    def hotkeys_by_uid(self, read: ChainRead, uid_keys: list, hotkeys: list) -> Any:
        """(netuid, uid) -> hotkey of every registered uid: an empty key means nobody is registered
        there, a permitted uid included (the chain's epoch weighs such a uid 0; ``anomalies``
        flags it). The last read's mapping when the uids and their hotkeys are the same."""
        last = self._hotkeys
        if last is not None and last[0][0] is uid_keys and last[0][1] == hotkeys:
            return last[1]
        mapping = frozen({(n, uid): h for (n, uid), h in zip(uid_keys, hotkeys) if someone(h)})
        self._hotkeys = ((uid_keys, hotkeys), mapping)
        return mapping

    def derived(self, item: str, rows: list, derive: Callable[[list], Any]) -> Any:
        """``derive(rows)``; the last read's when its scan handed out the very same rows (the
        storage reader's ``ValueCache`` does when a map is unchanged), so its links are not
        converted again."""
        last = self._derived.get(item)
        if last is not None and last[0] is rows:
            return last[1]
        mapping = derive(rows)
        self._derived[item] = (rows, mapping)
        return mapping


NOT_AHEAD = object()


class ReadAhead:
    """Stages fetched ahead with a guessed plan, each used only if its stage's plan is that very
    object. One read's; ``drop`` cancels what was not used (a changed plan, a failed read)."""

    def __init__(self) -> None:
        self._fetches: dict[str, tuple[Any, asyncio.Future]] = {}

    def start(self, stage: str, plan: Any, fetch: Any) -> None:
        self._fetches[stage] = (plan, asyncio.ensure_future(fetch))

    async def take(self, stage: str, plan: Any) -> Any:
        """The stage's answers if fetched with ``plan``, else ``NOT_AHEAD`` (the fetch dropped)."""
        found = self._fetches.pop(stage, None)
        if found is None:
            return NOT_AHEAD
        guessed, fetch = found
        if guessed is not plan:
            await cancelled(fetch)
            return NOT_AHEAD
        return await fetch

    async def drop(self) -> None:
        fetches = [fetch for _, fetch in self._fetches.values()]
        self._fetches.clear()
        for fetch in fetches:
            await cancelled(fetch)


async def cancelled(fetch: asyncio.Future) -> None:
    """Cancel ``fetch`` and wait for it to end, its outcome (an error included) retrieved and dropped."""
    fetch.cancel()
    await asyncio.gather(fetch, return_exceptions=True)


def nonzero(keys: list, values: list) -> dict:
    """{key: int(value)} of the non-zero values (what the chain stores as absent reads as zero)."""
    if set(map(type, values)) <= {int}:  # as decoded: the pairs picked in C
        return dict(compress(zip(keys, values), values))
    return {k: int(v) for k, v in zip(keys, values) if v}


def someone(hotkey: Any) -> bool:
    """Whether a decoded hotkey names an account (not absent, not the all-zero account)."""
    return bool(hotkey) and hotkey != ZERO_ACCOUNT


def _uid_count(read: ChainRead, netuid: int) -> int:
    """Uids to read on ``netuid``; a size the chain cannot have is refused before anything is asked for."""
    size = read.subnet_sizes.get(netuid, 0)
    if not 0 <= size <= MAX_UIDS:
        raise InvalidRead("subnet_too_big", f"SubnetworkN[{netuid}] is {size} (bound {MAX_UIDS})")
    return max(size, len(read.permits.get(netuid, ())))

