"""A small chain described as plain values (``World``), written into a simulated node block by block.

The scenario test mutates a ``World`` (stakes, takes, permits, child keys,
pending child sets) and ``ChainWriter.commit`` writes what changed into the
``ChainState``'s pending storage and commits one block. The same ``World`` is
what the event model and the stake oracle read, so the chain the node serves
and the chain the expectations are computed from are one description.
ParentKeys is never stored in a ``World``: it is derived from ChildKeys, as
the chain keeps it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import bittensor_core

from simnode import ChainState

RAO = 10**9
MAX = 2**64 - 1  # u64::MAX: a proportion of 1
HALF = MAX // 2
QUARTER = MAX // 4
S = "SubtensorModule"


def hotkey(i: int) -> str:
    return bittensor_core.ss58_encode(bytes([i]) * 32, 42)


Link = tuple[int, str]  # (proportion of u64::MAX, other hotkey)


@dataclass
class World:
    tao_weight: int  # u64 fraction of u64::MAX
    subnets: dict[int, list[str]]  # netuid -> hotkey of each uid (0 is root)
    permits: dict[int, list[bool]]  # netuid -> ValidatorPermit by uid
    stake: dict[tuple[str, int], int] = field(default_factory=dict)  # (hotkey, netuid) -> rao; netuid 0: root TAO
    takes: dict[tuple[str, int], int] = field(default_factory=dict)  # (hotkey, netuid) -> ChildkeyTake (u16 of 65535)
    child_keys: dict[tuple[str, int], list[Link]] = field(default_factory=dict)  # (parent, netuid) -> children
    pending: dict[tuple[int, str], tuple[list[Link], int]] = field(default_factory=dict)  # (netuid, parent) -> (children, cooldown block)
    owners: dict[str, str] = field(default_factory=dict)  # hotkey -> coldkey
    stake_threshold: int = 100 * RAO
    min_take: int = 0
    max_take: int = 11796
    pending_cooldown: int = 7200
    max_validators: int = 64

    @property
    def parent_keys(self) -> dict[tuple[str, int], list[Link]]:
        """ParentKeys as the chain mirrors it from ChildKeys: (child, netuid) -> [(proportion, parent)]."""
        mirror: dict[tuple[str, int], list[Link]] = {}
        for (parent, netuid), links in sorted(self.child_keys.items()):
            for proportion, child in links:
                mirror.setdefault((child, netuid), []).append((proportion, parent))
        return mirror

    def uid(self, hotkey: str, netuid: int) -> int:
        return self.subnets[netuid].index(hotkey)

    def set_permit(self, hotkey: str, netuid: int, permit: bool) -> None:
        self.permits[netuid][self.uid(hotkey, netuid)] = permit

    def set_children(self, parent: str, netuid: int, links: list[Link]) -> None:
        if links:
            self.child_keys[(parent, netuid)] = list(links)
        else:
            self.child_keys.pop((parent, netuid), None)

    def apply_pending(self, parent: str, netuid: int) -> None:
        """The chain applying a scheduled child set: ChildKeys becomes it, the pending row goes."""
        links, _cooldown = self.pending.pop((netuid, parent))
        self.set_children(parent, netuid, links)

    def copy(self) -> "World":
        return copy.deepcopy(self)

    def storage(self) -> dict[tuple[str, str, tuple], object]:
        """(pallet, item, params) -> value for every storage entry of this chain."""
        entries: dict[tuple[str, str, tuple], object] = {
            (S, "TaoWeight", ()): self.tao_weight,
            (S, "StakeThreshold", ()): self.stake_threshold,
            (S, "MinChildkeyTake", ()): self.min_take,
            (S, "MaxChildkeyTake", ()): self.max_take,
            (S, "PendingChildKeyCooldown", ()): self.pending_cooldown,
            (S, "TotalNetworks", ()): len(self.subnets),
        }
        for netuid, hotkeys in self.subnets.items():
            assert len(self.permits[netuid]) == len(hotkeys), f"netuid {netuid}: one permit flag per uid"
            entries[(S, "NetworksAdded", (netuid,))] = True
            entries[(S, "SubnetworkN", (netuid,))] = len(hotkeys)
            entries[(S, "MaxAllowedValidators", (netuid,))] = self.max_validators
            entries[(S, "ValidatorPermit", (netuid,))] = list(self.permits[netuid])
            for uid, h in enumerate(hotkeys):
                entries[(S, "Keys", (netuid, uid))] = h
                entries[(S, "Uids", (netuid, h))] = uid
        for (h, netuid), amount in self.stake.items():
            if amount:
                entries[(S, "TotalHotkeyAlpha", (h, netuid))] = amount
        for (h, netuid), take in self.takes.items():
            if take:
                entries[(S, "ChildkeyTake", (h, netuid))] = take
        for (parent, netuid), links in self.child_keys.items():
            if links:
                entries[(S, "ChildKeys", (parent, netuid))] = list(links)
        for (child, netuid), links in self.parent_keys.items():
            entries[(S, "ParentKeys", (child, netuid))] = list(links)
        for (netuid, parent), (links, cooldown) in self.pending.items():
            entries[(S, "PendingChildKeys", (netuid, parent))] = (list(links), cooldown)
        for h, cold in self.owners.items():
            entries[(S, "Owner", (h,))] = cold
        return entries


class ChainWriter:
    """Writes successive ``World``s into one ``ChainState``, one block each (only what changed)."""

    def __init__(self, state: ChainState):
        self.state = state
        self._written: dict[tuple[str, str, tuple], object] = {}

    def commit(self, world: World) -> int:
        """Write ``world`` into the pending storage and commit it; the new block's number."""
        entries = world.storage()
        for key in [k for k in self._written if k not in entries]:
            pallet, item, params = key
            self.state.delete(item, list(params), pallet=pallet)
            del self._written[key]
        for key, value in entries.items():
            if self._written.get(key) != value:
                pallet, item, params = key
                self.state.set(item, list(params), value, pallet=pallet)
                self._written[key] = copy.deepcopy(value)
        number, _hash = self.state.commit_block()
        return number
