"""Carry the stake arithmetic of one snapshot to the next: results keyed by their complete inputs.

Between two refreshes a minute apart only a small share of stakes and links move, yet the
arithmetic for every tracked validator and every permit contender is most of a snapshot's
CPU. The refresher owns one ``StakeMemo`` and passes it to every ``build_snapshot``; the
builder stays a function of its arguments. An entry is found by (hotkey, netuid) and used
only when everything the result was computed from is equal (``inputs``): own alpha, own
root, the child links, each parent's (proportion, alpha, root), the TaoWeight raw value,
and for a whole ``ValidatorState`` also the uid, permit, takes and suspension. A subnet's
permit ranking is found by netuid and used when its stake weights by uid, StakeThreshold,
owner uid and MaxAllowedValidators are equal. Anything else is a miss and is computed
again, so a result never depends on the memo.

Gathering those inputs is itself most of the cost when nearly nothing moved (two stake
lookups per contender, a tuple per validator), so the memo also keeps the last build's read:
``changes(read)`` diffs the two reads' mappings once (``ReadChanges``), and a result whose
inputs all lie outside what moved is reused without gathering them. The rule for what a
result depends on is ``ReadChanges``'s; a refresh where a global input moved (TaoWeight,
the minimum take) gathers everything again.

Memory stays at one snapshot's worth (and one read): a build writes what it used into fresh
tables, and ``finish()`` makes them the memo, dropping whatever that build did not ask for.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from exporter.snapshot.model import ChainRead
from exporter.snapshot.scope import tracked_candidates


class StakeMemo:
    """The last build's stake results. Used by one thread (the refresher's) at a time.

    Inputs and results sit in separate tables keyed by (hotkey, netuid) rather than as
    (inputs, result) pairs: a refresh with every stake moved stores them all again, and one
    object fewer each keeps the garbage collector's work (and that refresh's cost) down.
    """

    __slots__ = ("_states", "_weights", "_rankings", "_rows", "_read", "_order", "_identities", "_candidates",
                 "_next_states", "_next_weights", "_next_rankings", "_next_rows", "_next_read", "_next_order",
                 "_next_identities", "_next_candidates", "anomaly_parts")

    def __init__(self) -> None:
        # (inputs by key, results by key), for whole validators, for linked contenders'
        # weights and for subnets' rankings
        self._states: tuple[dict, dict] = ({}, {})
        self._weights: tuple[dict, dict] = ({}, {})
        self._rankings: tuple[dict, dict] = ({}, {})
        self._rows: dict[int, Any] = {}  # netuid -> its stake weights by uid, as the builder keeps them
        self._read: Optional[ChainRead] = None  # what the results above were computed from
        self._order: tuple[dict, list] = ({}, [])  # the tracked candidates, and them in snapshot order
        self._identities: dict[str, Any] = {}  # hotkey -> its Identity record
        self._candidates: Optional[tuple[tuple, dict]] = None  # the tracked candidates, by what they are of
        self.anomaly_parts: dict = {}  # what ``anomalies.find_anomalies`` keeps between builds
        self.start()

    def start(self, read: Optional[ChainRead] = None) -> None:
        """Begin a build (of ``read``): nothing used yet."""
        self._next_states, self._next_weights, self._next_rankings = ({}, {}), ({}, {}), ({}, {})
        self._next_rows, self._next_read, self._next_order = {}, read, ({}, [])
        self._next_identities = {}
        self._next_candidates = None

    def changes(self, read: ChainRead) -> Optional["ReadChanges"]:
        """What moved from the last build's read to ``read``; None: no last build, or a global input moved."""
        last = self._read
        if last is None or read is last:
            return None if last is None else ReadChanges.none()
        if (read.tao_weight, read.min_take) != (last.tao_weight, last.min_take) \
                or (read.min_take_per_subnet is None) != (last.min_take_per_subnet is None) \
                or (read.suspended is None) != (last.suspended is None):
            return None
        return ReadChanges.between(last, read)

    def unchanged_state(self, key: tuple[str, int]) -> Optional[Any]:
        """The stored (ValidatorState, weight) for ``key``, kept without comparing inputs: for a key
        the caller found outside what moved since the last build (``ReadChanges.state_unchanged``),
        whose stored inputs are then its inputs still."""
        result = self._states[1].get(key)
        if result is not None:
            self._next_states[0][key], self._next_states[1][key] = self._states[0][key], result
        return result

    def state(self, key: tuple[str, int], inputs: tuple) -> Optional[Any]:
        """The stored (ValidatorState, weight) for ``key`` if computed from ``inputs``, else None."""
        return _find(self._states, self._next_states, key, inputs)

    def keep_state(self, key: tuple[str, int], inputs: tuple, result: Any) -> None:
        self._next_states[0][key], self._next_states[1][key] = inputs, result

    def weight(self, key: tuple[str, int], inputs: tuple) -> Optional[int]:
        """The stored stake weight (I64F64 bits) for ``key`` if computed from ``inputs``, else None."""
        return _find(self._weights, self._next_weights, key, inputs)

    def keep_weight(self, key: tuple[str, int], inputs: tuple, result: int) -> None:
        self._next_weights[0][key], self._next_weights[1][key] = inputs, result

    def ranking(self, netuid: int, inputs: tuple) -> Optional[Any]:
        """The stored projection ranking (permits, cutoff, first out) of ``netuid`` if ranked from ``inputs``."""
        return _find(self._rankings, self._next_rankings, netuid, inputs)

    def keep_ranking(self, netuid: int, inputs: tuple, result: Any) -> None:
        self._next_rankings[0][netuid], self._next_rankings[1][netuid] = inputs, result

    def unchanged_weight(self, key: tuple[str, int]) -> None:
        """Keep the stored weight of a linked contender reused from the last build's row (its inputs
        outside what moved), so that it stays found by its inputs in later builds."""
        result = self._weights[1].get(key)
        if result is not None:
            self._next_weights[0][key], self._next_weights[1][key] = self._weights[0][key], result

    def order(self, candidates: dict) -> Optional[list]:
        """The last build's tracked candidates in snapshot order, if they are ``candidates``."""
        last, ordered = self._order
        return ordered if last is candidates or last == candidates else None

    def keep_order(self, candidates: dict, ordered: list) -> None:
        self._next_order = (candidates, ordered)

    def candidates(self, read: ChainRead, watched: frozenset[str]) -> dict:
        """``scope.tracked_candidates(read, watched)``; the last build's very mapping when everything
        it is made of is equal (dict equality, in C: ~1 ms where walking every uid is ~50 ms)."""
        inputs = (read.netuids, read.permits, read.hotkeys, read.watched_uids, watched,
                  (read.children, read.parents) if watched else None)
        last = self._candidates
        found = last[1] if last is not None and last[0] == inputs else tracked_candidates(read, watched)
        self._next_candidates = (inputs, found)
        return found

    def identity(self, identity: Any) -> Any:
        """The last build's record of ``identity``'s hotkey when equal to it (the very object, so
        the renderer finds its rows unchanged by identity), else ``identity``."""
        last = self._identities.get(identity.hotkey)
        kept = last if last is not None and last == identity else identity
        self._next_identities[identity.hotkey] = kept
        return kept

    def row(self, netuid: int) -> Optional[Any]:
        """The last build's stake weights by uid of ``netuid`` (as the builder keeps them), if it ranked it."""
        return self._rows.get(netuid)

    def keep_row(self, netuid: int, row: Any) -> None:
        self._next_rows[netuid] = row

    def finish(self) -> None:
        """End a build: keep only the entries it used or computed, and the read they are of."""
        self._states, self._weights, self._rankings = self._next_states, self._next_weights, self._next_rankings
        self._rows, self._read, self._order = self._next_rows, self._next_read, self._next_order
        self._identities, self._candidates = self._next_identities, self._next_candidates
        self.start()

    def states(self) -> dict[tuple[str, int], Any]:
        """(hotkey, netuid) -> the (ValidatorState, weight) kept, for tests."""
        return dict(self._states[1])

    def rankings(self) -> dict[int, Any]:
        """netuid -> the ranking kept, for tests."""
        return dict(self._rankings[1])

    def __len__(self) -> int:
        return len(self._states[0]) + len(self._weights[0]) + len(self._rankings[0])


def _find(tables: tuple[dict, dict], used: tuple[dict, dict], key: Any, inputs: tuple) -> Optional[Any]:
    found = tables[0].get(key)
    if found is None or found != inputs:
        return None
    result = tables[1][key]
    used[0][key] = found
    used[1][key] = result
    return result


class ReadChanges:
    """The keys whose values differ between two reads (added, removed or changed), per mapping
    a stake result reads, for telling without gathering its inputs that a result still holds.

    A stake weight of (h, n) reads: the stake of (h, n) and (h, 0), ChildKeys and ParentKeys of
    (h, n), the stake on n and on root of each parent, and TaoWeight (equal, or no
    ``ReadChanges``). A ``ValidatorState`` also reads its uid and permit (the caller compares
    them), its take, the subnet's minimum take, its suspension and the global minimum take.
    """

    __slots__ = ("stake", "roots", "links", "takes", "suspended", "subnet_min_takes", "same_hotkeys")

    def __init__(self, stake: set, links: set, takes: set, suspended: set, subnet_min_takes: set,
                 same_hotkeys: bool) -> None:
        self.stake, self.links, self.takes, self.suspended = stake, links, takes, suspended
        self.subnet_min_takes = subnet_min_takes
        self.same_hotkeys = same_hotkeys  # every uid holds the hotkey it held
        self.roots = {hotkey for hotkey, netuid in stake if netuid == 0}  # hotkeys whose root stake moved

    @classmethod
    def none(cls) -> "ReadChanges":
        return cls(set(), set(), set(), set(), set(), True)

    @classmethod
    def between(cls, last: ChainRead, read: ChainRead) -> "ReadChanges":
        return cls(
            stake=_changed_keys(last.stake, read.stake),
            links=_changed_keys(last.children, read.children) | _changed_keys(last.parents, read.parents),
            takes=_changed_keys(last.takes, read.takes),
            suspended=_changed_keys(last.suspended or {}, read.suspended or {}),
            subnet_min_takes=_changed_keys(last.min_take_per_subnet or {}, read.min_take_per_subnet or {}),
            same_hotkeys=last.hotkeys is read.hotkeys or last.hotkeys == read.hotkeys,
        )

    def weight_unchanged(self, read: ChainRead, key: tuple[str, int]) -> bool:
        """Whether every input of the stake weight of ``key`` is what it was in the last read."""
        if key in self.stake or key[0] in self.roots or key in self.links:
            return False
        parents = read.parents.get(key)  # the same as in the last read: key is not in links
        if parents:
            stake, roots, netuid = self.stake, self.roots, key[1]
            for _, parent in parents:
                if parent in roots or (parent, netuid) in stake:
                    return False
        return True

    def state_unchanged(self, read: ChainRead, key: tuple[str, int]) -> bool:
        """``weight_unchanged``, and the take, subnet minimum take and suspension of ``key`` too."""
        return (key not in self.takes and key not in self.suspended and key[1] not in self.subnet_min_takes
                and self.weight_unchanged(read, key))


_MISSING = object()


def _changed_keys(last: Mapping, new: Mapping) -> set:
    """Keys present in only one of the mappings or with unequal values (in C when the values hash)."""
    if last is new or last == new:
        return set()
    try:
        return {key for key, _ in last.items() ^ new.items()}
    except TypeError:  # a value that does not hash: compared one by one
        get = last.get
        changed = {key for key, value in new.items() if get(key, _MISSING) != value}
        return changed | (last.keys() - new.keys())
