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

from typing import Iterable, Optional

from exporter.snapshot.model import ChainRead


def tracked_candidates(read: ChainRead, watched: frozenset[str]) -> dict[tuple[str, int], Optional[int]]:
    """(hotkey, netuid) -> uid for permit holders and watched hotkeys on every subnet."""
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
