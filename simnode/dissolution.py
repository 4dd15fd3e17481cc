"""A subnet's dissolution on the simulated chain, its storage deleted phase by phase as the chain does.

Written from subtensor PR #2412 (``subnets/dissolution.rs``, branch ``benchmark-dissolve-network``
of ``opentensor/subtensor``): ``do_dissolve_network`` only removes the netuid from
``NetworksAdded`` (``TotalNetworks`` - 1), queues it in ``DissolveCleanupQueue`` and deposits
``NetworkRemoved(netuid)``; ``on_idle`` then walks ``DissolveCleanupPhase`` under a weight
meter, resuming at the next block where the meter ran out, and dequeues the netuid once
every phase is done. Between two phases the storage holds entries of a netuid that is no
longer a subnet: that is what a test catches here, one phase a block or several.

The phases kept are those that delete what a reader of childkeys sees, in the chain's order
(the others, root dividends, swap liquidity, commitments, weights on root, emissions, locks,
delete nothing such a reader reads):

====================== =============================================================== ===========================================
phase                  deletes (entries of the netuid)                                  the chain's phase
====================== =============================================================== ===========================================
``stake_totals``       ``TotalHotkeyAlpha``                                             ``AlphaInOutStakesHotkeyTotals``
``network_parameters`` ``SubnetworkN``, ``ValidatorPermit``, ``Tempo``, k, the owner... ``NetworkParameters``
``network_maps``       ``Keys``, ``Uids``, ``PendingChildKeys``                         ``NetworkMapParameters``
``childkey_take``      ``ChildkeyTake``                                                 ``NetworkChildkeyTake``
``child_keys``         ``ChildKeys``                                                    ``NetworkChildkeys``
``parent_keys``        ``ParentKeys``                                                   ``NetworkParentkeys``
``finished``           the netuid leaves ``DissolveCleanupQueue``                        the last phase done
====================== =============================================================== ===========================================

On a runtime without ``DissolveCleanupQueue`` (spec 393 and 365, whose ``remove_network`` deletes
everything at once: ``actions.remove_network``) the same walk is the chain of a newer runtime
seen through older metadata: nothing is queued, the leftovers alone say a dissolution runs.

    cleanup = dissolve_network(state, 3)     # NetworksAdded[3] gone, NetworkRemoved(3)
    state.commit_block()
    cleanup.step(); state.commit_block()     # stake totals deleted
    cleanup.run_through("child_keys"); state.commit_block()   # ChildKeys gone, ParentKeys still there
"""

from __future__ import annotations

from typing import Iterable, Optional

from simnode.epoch import PALLET, _Storage
from simnode.state import ChainState

__all__ = ["PHASES", "QUEUE", "Dissolution", "dissolve_network"]

QUEUE = "DissolveCleanupQueue"
PHASES = ("stake_totals", "network_parameters", "network_maps", "childkey_take", "child_keys", "parent_keys", "finished")
# Items keyed by the netuid alone that remove_network_parameters deletes (those the simulated chain may hold).
_NETUID_ITEMS = ("SubnetworkN", "ValidatorPermit", "StakeWeight", "Tempo", "MaxAllowedValidators", "SubnetOwnerHotkey",
                 "SubnetOwner", "Active", "Emission", "Dividends", "ValidatorTrust", "LastEpochBlock", "PendingEpochAt",
                 "SubnetEpochIndex", "MinChildkeyTakePerSubnet")
# (item, index of the netuid in its key) deleted by a phase that scans a map.
_MAPS = {
    "stake_totals": (("TotalHotkeyAlpha", 1),),
    "network_maps": (("Keys", 0), ("Uids", 0), ("PendingChildKeys", 0)),
    "childkey_take": (("ChildkeyTake", 1),),
    "child_keys": (("ChildKeys", 1),),
    "parent_keys": (("ParentKeys", 1),),
}


def declares(state: ChainState, item: str) -> bool:
    """Whether the pending block's runtime declares ``item``."""
    try:
        state.runtime.storage_entry(PALLET, item)
    except KeyError:
        return False
    return True


def dissolve_network(state: ChainState, netuid: int) -> "Dissolution":
    """``do_dissolve_network``: the netuid out of ``NetworksAdded`` at once, ``TotalNetworks`` - 1,
    queued in ``DissolveCleanupQueue`` (runtimes that declare it), ``NetworkRemoved(netuid)``.
    Returns the cleanup still to walk; nothing else is deleted yet."""
    st = _Storage(state)
    if netuid == 0 or not st.has("NetworksAdded", [netuid]):
        raise ValueError(f"netuid {netuid} is not a subnet that can be dissolved")
    state.delete("NetworksAdded", [netuid])
    state.set("TotalNetworks", [], max(0, st.one("TotalNetworks") - 1))
    if declares(state, QUEUE):
        queue = list(st.one(QUEUE) or [])
        if netuid in queue:
            raise ValueError(f"netuid {netuid} is already queued for cleanup")
        state.set(QUEUE, [], queue + [netuid])
    index = state.emit(PALLET, "NetworkRemoved", [netuid])
    return Dissolution(state, netuid, index)


class Dissolution:
    """One dissolved netuid's cleanup: each ``step`` runs the next phase in the pending block."""

    def __init__(self, state: ChainState, netuid: int, extrinsic: Optional[int] = None):
        self.state, self.netuid, self.extrinsic = state, netuid, extrinsic
        self._left = list(PHASES)

    @property
    def next_phase(self) -> Optional[str]:
        return self._left[0] if self._left else None

    @property
    def done(self) -> bool:
        return not self._left

    def step(self) -> str:
        """Run the next phase on the pending storage (commit the block yourself); returns its name."""
        if not self._left:
            raise ValueError(f"the cleanup of netuid {self.netuid} is finished")
        phase = self._left.pop(0)
        state, st = self.state, _Storage(self.state)
        if phase == "network_parameters":
            for item in _NETUID_ITEMS:
                if declares(state, item):
                    state.delete(item, [self.netuid])
        elif phase == "finished":
            if declares(state, QUEUE):
                state.set(QUEUE, [], [n for n in st.one(QUEUE) or [] if n != self.netuid])
        else:
            self._delete(st, _MAPS[phase])
        return phase

    def run_through(self, phase: str) -> list[str]:
        """Run the phases up to and including ``phase``; returns those run."""
        if phase not in self._left:
            raise ValueError(f"phase {phase!r} is not ahead (left: {self._left})")
        ran = []
        while not ran or ran[-1] != phase:
            ran.append(self.step())
        return ran

    def finish(self) -> list[str]:
        return self.run_through(PHASES[-1]) if self._left else []

    def _delete(self, st: _Storage, maps: Iterable[tuple[str, int]]) -> None:
        maps = tuple(maps)
        found = st.key_params([item for item, _ in maps])
        for item, at in maps:
            for params in found[item]:
                if params[at] == self.netuid:
                    self.state.delete(item, list(params))
