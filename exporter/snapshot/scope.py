"""The scope rules: which (hotkey, netuid) pairs a refresh tracks.

*Tracked* (change history follows the chain, not the export scope): every
validator-permit holder on every subnet (netuid != 0), plus every watched
hotkey wherever it is registered or has childkey relationships, whatever the
netuid filter and ``min_stake_weight`` say. Which of them ``/metrics`` exports
(the netuid filter, the mode, the stake filter) is the snapshot builder's call.

*Contenders*: every other registered uid on a subnet. Only their stake
weights are computed, to find the strongest uid without a permit.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional

from exporter.snapshot.model import ChainRead, frozen

# The last answer of tracked_candidates and everything it was computed from. A refresh asks
# twice (the reader plans its stake keys with it, the builder builds with it) and a steady
# chain gives the same answer refresh after refresh: comparing the inputs (dict equality,
# in C) costs ~1 ms where walking every uid cost ~50 ms. The pair is read and replaced whole
# (one assignment), so two threads (a refresh, a backfill) can only miss each other's answer.
_last: tuple[Any, Mapping] = (None, frozen({}))


def tracked_candidates(read: ChainRead, watched: frozenset[str]) -> Mapping[tuple[str, int], Optional[int]]:
    """(hotkey, netuid) -> uid for permit holders and watched hotkeys on every subnet (read-only)."""
    global _last
    inputs = (read.netuids, read.permits, read.hotkeys, read.watched_uids, watched,
              (read.children, read.parents) if watched else None)
    last_inputs, last_answer = _last
    if last_inputs == inputs:
        return last_answer
    answer = frozen(_tracked_candidates(read, watched))
    _last = (inputs, answer)
    return answer


def _tracked_candidates(read: ChainRead, watched: frozenset[str]) -> dict[tuple[str, int], Optional[int]]:
    candidates: dict[tuple[str, int], Optional[int]] = {}
    for netuid in read.netuids:
        if netuid == 0:
            continue
        for uid, permitted in enumerate(read.permits.get(netuid, ())):
            hotkey = read.hotkeys.get((netuid, uid))
            if permitted and hotkey is not None:
                candidates[(hotkey, netuid)] = uid
    for (netuid, hotkey), uid in read.watched_uids.items():
        if netuid != 0:
            candidates.setdefault((hotkey, netuid), uid)
    for key in _related_keys(read, watched):
        candidates.setdefault(key, None)
    return candidates


def registered_uids(read: ChainRead) -> Iterable[tuple[str, int, int]]:
    """(hotkey, netuid, uid) of every uid the read knows the hotkey of, on subnets other than root."""
    return ((hotkey, netuid, uid) for (netuid, uid), hotkey in read.hotkeys.items() if netuid != 0)


def _related_keys(read: ChainRead, hotkeys: frozenset[str]) -> Iterable[tuple[str, int]]:
    """(hotkey, netuid) where one of ``hotkeys`` has children or parents."""
    if not hotkeys:
        return ()
    return [key for key in (*read.children, *read.parents) if key[0] in hotkeys]
