"""The simulated chain's weight sets, delegate takes and epoch outputs, as the chain writes them."""

from __future__ import annotations

from simnode import ChainState
from simnode.activity import U16_MAX, quality, set_activity_cutoff, set_delegate_take, set_weights
from simnode.epoch import advance_to, next_epoch_block
from simnode.scenarios import demo

NETUID = 1


def world():
    state = ChainState()
    built = demo(state)
    return state, built


def test_a_weight_set_writes_its_block_into_last_update_and_deposits_weights_set():
    state, _ = world()
    block = state.head.number + 1
    set_weights(state, NETUID, 3)
    set_weights(state, NETUID, 5, mechanism=1)
    state.commit_block()
    assert state.get("LastUpdate", [NETUID])[3] == block
    assert state.get("LastUpdate", [NETUID + 4096])[5] == block, "mechanism 1's row is netuid + 4096"
    assert [(e["event_id"], list(e["attributes"])) for e in _subtensor_events(state, block)] == [
        ("WeightsSet", [NETUID, 3]), ("WeightsSet", [NETUID + 4096, 5])]


def test_a_delegate_take_change_writes_delegates_and_its_event():
    state, built = world()
    hotkey = built.hotkeys[NETUID][0]
    block = state.head.number + 1
    set_delegate_take(state, hotkey, 100)
    state.commit_block()
    assert state.get("Delegates", [hotkey]) == 100
    assert [e["event_id"] for e in _subtensor_events(state, block)] == ["TakeDecreased"]


def test_an_epoch_marks_a_validator_that_stopped_setting_weights_inactive_and_stops_its_dividends():
    state, built = world()
    permits = state.get("ValidatorPermit", [NETUID])
    stale, live = [uid for uid, p in enumerate(permits) if p][:2]
    set_activity_cutoff(state, NETUID, 20)
    state.commit_block()
    epoch = next_epoch_block(state.head.number + 30, NETUID, built.tempo[NETUID])
    advance_to(state, epoch - 10)
    set_weights(state, NETUID, live)  # 10 blocks before the epoch: within the cutoff
    state.commit_block()
    advance_to(state, epoch)
    active, trust = state.get("Active", [NETUID]), state.get("ValidatorTrust", [NETUID])
    dividends, emission = state.get("Dividends", [NETUID]), state.get("Emission", [NETUID])
    assert (active[stale], trust[stale], dividends[stale], emission[stale]) == (False, 0, 0, 0)
    assert active[live] and trust[live] == quality(built.hotkeys[NETUID][live]) and dividends[live] > 0
    assert sum(dividends) <= U16_MAX and sum(1 for d in dividends if d) == 1, "the only active validator takes all"
    hotkey = built.hotkeys[NETUID][live]
    assert state.get("AlphaDividendsPerSubnet", [NETUID, hotkey]) > 0
    assert state.get("AlphaDividendsPerSubnet", [NETUID, built.hotkeys[NETUID][stale]]) is None, "cleared at the epoch"


def _subtensor_events(state, block):
    return [e for e in state.events_at(block) if e["module_id"] == "SubtensorModule"]
