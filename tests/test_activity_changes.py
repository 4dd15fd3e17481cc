"""History's activity kinds: a uid replaced, a delegate take changed, a validator marked inactive
or active again; each at the chain event or epoch that explains it, and kept across restarts."""

from __future__ import annotations

from dataclasses import replace

from exporter.config import ScopeConfig
from exporter.history.store import HistoryStore, Retention
from exporter.snapshot.builder import build_snapshot
from exporter.snapshot.causes import changes_since
from exporter.snapshot.changes import HistoryState
from exporter.snapshot.model import ChainEvent, EventWindow, frozen
from tests.test_chain_activity import C, P, Q, activity_read, small_read

SCOPE = ScopeConfig(min_stake_weight=0)


def recorded(read):
    state, _ = changes_since(HistoryState.empty(), build_snapshot(read, SCOPE), 0.05, None)
    return state


def kinds(events, *wanted):
    return [e for e in events if e.kind in wanted]


def window(*events, epochs=None):
    return EventWindow(first=101, read_from=101, last=200, events=tuple(events),
                       times=frozen({b: 1000.0 + b for b in range(101, 201)}), epochs=frozen(epochs or {}))


def test_a_validator_marked_inactive_at_an_epoch_is_recorded_there():
    before = recorded(small_read())
    later = small_read(block=200, activity=activity_read(active=frozen({1: (False, True)})))
    state, events = changes_since(before, build_snapshot(later, SCOPE), 0.05, window(epochs={1: (150,)}))
    found = {(e.kind, e.hotkey): e for e in kinds(events, "became_inactive", "became_active")}
    assert set(found) == {("became_inactive", C), ("became_active", P)}
    assert (found[("became_inactive", C)].block, found[("became_inactive", C)].cause) == (150, "epoch")
    assert state.active == {(C, 1): False, (P, 1): True}


def test_a_delegate_take_change_is_placed_at_its_event_on_netuid_0():
    before = recorded(small_read())
    later = small_read(block=200, activity=activity_read(delegate_takes=frozen({C: 11796, P: 6553})))
    raised = ChainEvent(block=120, index=3, extrinsic=2, name="TakeIncreased", accounts=("cold-p", P), numbers=(6553,))
    _, events = changes_since(before, build_snapshot(later, SCOPE), 0.05, window(raised))
    (change,) = kinds(events, "delegate_take_changed")
    assert (change.hotkey, change.netuid, change.block, change.cause, change.extrinsic) == (P, 0, 120, "TakeIncreased", 2)
    assert (change.old, change.new) == (0.0, 6553 / 65535)
    _, quiet = changes_since(before, build_snapshot(later, SCOPE), 0.05, window())
    assert [(e.block, e.cause) for e in kinds(quiet, "delegate_take_changed")] == [(200, "no_event")]


def test_a_uid_taken_by_a_new_hotkey_is_uid_replaced_apart_from_the_permit_lost():
    before = recorded(small_read())
    replaced = small_read(block=200, hotkeys=frozen({(1, 0): C, (1, 1): Q}), permits=frozen({1: (True, False)}),
                          activity=activity_read(delegate_takes=frozen({C: 11796, Q: 0})))
    registered = ChainEvent(block=130, index=1, extrinsic=1, name="NeuronRegistered", accounts=(Q,), netuids=(1,), numbers=(1,))
    _, events = changes_since(before, build_snapshot(replaced, SCOPE), 0.05, window(registered))
    (change,) = kinds(events, "uid_replaced")
    assert (change.hotkey, change.netuid, change.old, change.new, change.block, change.cause) == (P, 1, 1, Q, 130, "NeuronRegistered")
    assert [e.hotkey for e in kinds(events, "permit_lost")] == [P]


def test_a_permit_lost_at_the_same_uid_is_no_uid_replaced():
    before = recorded(small_read())
    lost = small_read(block=200, permits=frozen({1: (True, False)}))
    _, events = changes_since(before, build_snapshot(lost, SCOPE), 0.05, None)
    assert [e.kind for e in events if e.hotkey == P] == ["permit_lost"]


def test_nothing_is_recorded_from_a_snapshot_without_activity_and_the_recorded_activity_stands():
    before = recorded(small_read())
    state, events = changes_since(before, build_snapshot(small_read(activity=None), SCOPE), 0.05, None)
    assert (state.active, state.delegate_takes) == (before.active, before.delegate_takes) and not events


def test_the_activity_state_survives_a_restart(tmp_path):
    path = str(tmp_path / "h.db")
    store = HistoryStore.open(path)
    snapshot = build_snapshot(small_read(), SCOPE)
    state, events = changes_since(HistoryState.empty(), snapshot, 0.05, None)
    store.commit_refresh(snapshot, HistoryState.empty(), state, events, Retention(), frozenset())
    later = build_snapshot(small_read(block=200, activity=activity_read(active=frozen({1: (True, True)}),
                                                                        delegate_takes=frozen({C: 100, P: 0}))), SCOPE)
    newer, _ = changes_since(state, later, 0.05, None)
    store.commit_refresh(later, state, newer, [], Retention(), frozenset())
    store.close()
    loaded = HistoryStore.open(path).load_state()
    assert (loaded.active, loaded.delegate_takes) == (newer.active, newer.delegate_takes)
    assert loaded.active == {(C, 1): True, (P, 1): True} and loaded.delegate_takes == {C: 100, P: 0}
    assert replace(loaded, active={}, delegate_takes={}) == replace(newer, active={}, delegate_takes={})


def test_activity_changes_reach_the_history_file_and_the_last_change_series(tricky_node, exporter_factory, tmp_path):
    """Over the wire: a delegate take lowered, an epoch marking M inactive, Z's uid taken by a new
    hotkey; each recorded with its cause, and the watched validators' last-change series say so."""
    import sqlite3

    from exporter.config import WatchedHotkey
    from simnode.actions import register_neuron
    from simnode.activity import set_delegate_take
    from tests import tricky_chain as t
    from tests.harness import series

    state = tricky_node.state
    state.set("LastUpdate", [1], [1] * 11)
    state.set("Active", [1], [True] * 11)
    state.commit_block()
    scope = ScopeConfig(min_stake_weight=100, watch=tuple(WatchedHotkey(h, a) for h, a in ((t.P, "p"), (t.M, "m"), (t.Z, "z"))))
    db = tmp_path / "history.db"
    exporter = exporter_factory(tricky_node, scope=scope, history_path=str(db))
    assert exporter.refresh()
    newcomer = t.hotkey(99)
    set_delegate_take(state, t.P, 100)
    state.set("Active", [1], [True] * 6 + [False] + [True] * 4)  # M is uid 6
    register_neuron(state, 1, 9, newcomer)  # Z's uid
    block, _ = state.commit_block()
    assert exporter.refresh()
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT kind, hotkey, netuid, old_value, new_value, cause, block FROM events WHERE kind IN "
                            "('delegate_take_changed', 'became_inactive', 'uid_replaced') ORDER BY kind").fetchall()
    assert rows == [
        ("became_inactive", t.M, 1, "true", "false", "no_event", block),  # no epoch of subnet 1 in the window
        ("delegate_take_changed", t.P, 0, str(11796 / 65535), str(100 / 65535), "TakeDecreased", block),
        ("uid_replaced", t.Z, 1, "9", f'"{newcomer}"', "NeuronRegistered", block),
    ]
    s = exporter.scrape()
    for hotkey, netuid, kind in ((t.P, 0, "delegate_take_changed"), (t.M, 1, "became_inactive"), (t.Z, 1, "uid_replaced")):
        assert series(s, "bittensor_validator_last_change_block", hotkey=hotkey, netuid=netuid, kind=kind) == block, kind
    assert series(s, "bittensor_validator_inactive", hotkey=t.M, netuid=1) == 1
