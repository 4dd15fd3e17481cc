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

Memory stays at one snapshot's worth: a build writes what it used into fresh tables, and
``finish()`` makes them the memo, dropping whatever that build did not ask for.
"""

from __future__ import annotations

from typing import Any, Optional


class StakeMemo:
    """The last build's stake results. Used by one thread (the refresher's) at a time.

    Inputs and results sit in separate tables keyed by (hotkey, netuid) rather than as
    (inputs, result) pairs: a refresh with every stake moved stores them all again, and one
    object fewer each keeps the garbage collector's work (and that refresh's cost) down.
    """

    __slots__ = ("_states", "_weights", "_rankings", "_next_states", "_next_weights", "_next_rankings")

    def __init__(self) -> None:
        # (inputs by key, results by key), for whole validators, for linked contenders'
        # weights and for subnets' rankings
        self._states: tuple[dict, dict] = ({}, {})
        self._weights: tuple[dict, dict] = ({}, {})
        self._rankings: tuple[dict, dict] = ({}, {})
        self.start()

    def start(self) -> None:
        """Begin a build: nothing used yet."""
        self._next_states, self._next_weights, self._next_rankings = ({}, {}), ({}, {}), ({}, {})

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

    def finish(self) -> None:
        """End a build: keep only the entries it used or computed."""
        self._states, self._weights, self._rankings = self._next_states, self._next_weights, self._next_rankings
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
