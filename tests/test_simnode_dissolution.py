"""The simulated node's dissolution: out of NetworksAdded at once, the storage deleted phase by phase."""

from __future__ import annotations

import pytest

from simnode import ChainState
from simnode.actions import add_network, add_stake, dissolve_network, register_neuron, schedule_children, set_childkey_take
from simnode.dissolution import PHASES, QUEUE
from simnode.state import NEWER_RUNTIME_SPEC
from tests.scenario_chain import HALF, RAO, hotkey

NETUID, OTHER = 3, 1
PARENT, CHILD, KEPT = hotkey(1), hotkey(2), hotkey(3)
COLD = hotkey(9)


def world(spec: int) -> ChainState:
    """Subnets 1 and 3; on 3 a parent with a child (ChildKeys and its ParentKeys mirror), a take, a
    pending set, stakes and permits; on 1 a child set that must survive 3's cleanup."""
    state = ChainState(spec)
    for netuid in (0, OTHER, NETUID):
        add_network(state, netuid, owner_hotkey=PARENT)
    for netuid in (OTHER, NETUID):
        register_neuron(state, netuid, 0, PARENT)
        register_neuron(state, netuid, 1, CHILD)
        state.set("ValidatorPermit", [netuid], [True, True])
        add_stake(state, COLD, PARENT, netuid, 1_000 * RAO)
        state.set("ChildKeys", [PARENT, netuid], [(HALF, CHILD)])
        state.set("ParentKeys", [CHILD, netuid], [(HALF, PARENT)])
        set_childkey_take(state, CHILD, netuid, 1_000)
    schedule_children(state, PARENT, NETUID, [(HALF, KEPT)], cooldown=10)
    state.commit_block()
    return state


def leftovers(state: ChainState) -> set[str]:
    """The items still holding an entry of NETUID (the pending storage)."""
    found = {item for item, params in (
        ("TotalHotkeyAlpha", [PARENT, NETUID]), ("SubnetworkN", [NETUID]), ("ValidatorPermit", [NETUID]),
        ("Tempo", [NETUID]), ("Keys", [NETUID, 0]), ("Uids", [NETUID, CHILD]), ("PendingChildKeys", [NETUID, PARENT]),
        ("ChildkeyTake", [CHILD, NETUID]), ("ChildKeys", [PARENT, NETUID]), ("ParentKeys", [CHILD, NETUID]),
    ) if state.get(item, params) is not None}
    return found


EVERYTHING = {"TotalHotkeyAlpha", "SubnetworkN", "ValidatorPermit", "Tempo", "Keys", "Uids", "PendingChildKeys",
              "ChildkeyTake", "ChildKeys", "ParentKeys"}
# What each phase leaves of NETUID, in the chain's order (subnets/dissolution.rs).
LEFT_AFTER = {
    "stake_totals": EVERYTHING - {"TotalHotkeyAlpha"},
    "network_parameters": {"Keys", "Uids", "PendingChildKeys", "ChildkeyTake", "ChildKeys", "ParentKeys"},
    "network_maps": {"ChildkeyTake", "ChildKeys", "ParentKeys"},
    "childkey_take": {"ChildKeys", "ParentKeys"},
    "child_keys": {"ParentKeys"},  # the mirror broken, by design, until the next phase
    "parent_keys": set(),
    "finished": set(),
}


@pytest.mark.parametrize("spec", [393, NEWER_RUNTIME_SPEC])
def test_the_netuid_leaves_networks_added_at_once_and_its_maps_go_phase_by_phase(spec):
    state = world(spec)
    kept = {item: state.get(item, params) for item, params in (
        ("ChildKeys", [PARENT, OTHER]), ("ParentKeys", [CHILD, OTHER]), ("ChildkeyTake", [CHILD, OTHER]),
        ("TotalHotkeyAlpha", [PARENT, OTHER]), ("ValidatorPermit", [OTHER]), ("Keys", [OTHER, 1]))}
    queued = spec == NEWER_RUNTIME_SPEC  # only the newer runtime declares DissolveCleanupQueue

    cleanup = dissolve_network(state, NETUID)
    number, _ = state.commit_block()
    assert state.get("NetworksAdded", [NETUID]) is None and state.get("TotalNetworks") == 2
    assert leftovers(state) == EVERYTHING, "nothing deleted yet but NetworksAdded"
    assert [(e["event_id"], e["attributes"]) for e in state.events_at(number) if e["module_id"] == "SubtensorModule"] \
        == [("NetworkRemoved", NETUID)]
    assert (state.get(QUEUE) if queued else None) == ([NETUID] if queued else None)

    for phase in PHASES:
        assert cleanup.step() == phase
        state.commit_block()
        assert leftovers(state) == LEFT_AFTER[phase], phase
        if queued:
            assert state.get(QUEUE) == ([] if phase == "finished" else [NETUID]), phase
    assert cleanup.done
    assert {item: state.get(item, params) for item, params in (
        ("ChildKeys", [PARENT, OTHER]), ("ParentKeys", [CHILD, OTHER]), ("ChildkeyTake", [CHILD, OTHER]),
        ("TotalHotkeyAlpha", [PARENT, OTHER]), ("ValidatorPermit", [OTHER]), ("Keys", [OTHER, 1]))} == kept


def test_run_through_stops_after_the_phase_named():
    state = world(NEWER_RUNTIME_SPEC)
    cleanup = dissolve_network(state, NETUID)
    assert cleanup.run_through("child_keys") == list(PHASES[:PHASES.index("child_keys") + 1])
    assert cleanup.next_phase == "parent_keys"
    assert leftovers(state) == {"ParentKeys"}
    with pytest.raises(ValueError):
        cleanup.run_through("stake_totals")  # behind it
    assert cleanup.finish() == ["parent_keys", "finished"] and cleanup.finish() == []


def test_root_and_a_netuid_that_is_not_a_subnet_cannot_be_dissolved():
    state = world(NEWER_RUNTIME_SPEC)
    for netuid in (0, 7):
        with pytest.raises(ValueError):
            dissolve_network(state, netuid)
    dissolve_network(state, NETUID)
    with pytest.raises(ValueError):
        dissolve_network(state, NETUID)  # already out of NetworksAdded
