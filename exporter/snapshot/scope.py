"""The scope rule: which (hotkey, netuid) pairs a refresh looks at, before the stake filter.

Permit holders on every subnet (netuid != 0) in the configured filter, plus
every watched hotkey wherever it is registered or has childkey relationships.
The chain reader uses it to know whose stakes to read; the snapshot builder
uses it to know whom to compute.
"""

from __future__ import annotations

from typing import Iterable, Optional

from exporter.config import ScopeConfig
from exporter.snapshot.model import ChainRead


def select_candidates(read: ChainRead, scope: ScopeConfig) -> dict[tuple[str, int], Optional[int]]:
    """(hotkey, netuid) -> uid for permit holders and watched hotkeys, before the stake filter."""
    candidates: dict[tuple[str, int], Optional[int]] = {}
    for netuid in read.netuids:
        if netuid == 0 or not scope.includes_netuid(netuid):
            continue
        for uid, permitted in enumerate(read.permits.get(netuid, ())):
            hotkey = read.hotkeys.get((netuid, uid))
            if permitted and hotkey is not None:
                candidates[(hotkey, netuid)] = uid
    for (netuid, hotkey), uid in read.watched_uids.items():
        if netuid != 0 and scope.includes_netuid(netuid):
            candidates.setdefault((hotkey, netuid), uid)
    watched = scope.watched_hotkeys
    for hotkey, netuid in _related_keys(read, watched):
        if scope.includes_netuid(netuid):
            candidates.setdefault((hotkey, netuid), None)
    return candidates


def _related_keys(read: ChainRead, hotkeys: frozenset[str]) -> Iterable[tuple[str, int]]:
    """(hotkey, netuid) where one of ``hotkeys`` has children or parents."""
    if not hotkeys:
        return ()
    return [key for key in (*read.children, *read.parents) if key[0] in hotkeys]
