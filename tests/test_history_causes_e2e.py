"""Every change at its block, with its cause, over the real wire: the simulated node deposits the
chain's events, the exporter reads them (state_queryStorage over the blocks since its last
refresh) and records each change once; restarts replay what was missed, and what lies beyond
the node's pruning window is one net change flagged as a gap, never placed at a made-up block."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from dataclasses import replace

from exporter.config import HistoryConfig, ScopeConfig, WatchedHotkey
from simnode import ChainState, SimNode
from simnode.actions import add_stake, schedule_children, set_childkey_take
from simnode.epoch import advance_to
from tests import tricky_chain as t
from tests.conftest import write_tricky_chain
from tests.harness import series

SCOPE = ScopeConfig(min_stake_weight=0, watch=(WatchedHotkey(t.M, "M"), WatchedHotkey(t.C2, "C2")))
PRUNING = 40  # blocks of state the node keeps before its head
COLD = t.COLD[t.M]


def recorded(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT block, kind, hotkey, netuid, cause, extrinsic, block_from, old_value, new_value FROM events ORDER BY id"
        ).fetchall()


def brief(rows) -> list[tuple]:
    return [(block, kind, hotkey, cause) for block, kind, hotkey, _, cause, *_ in rows]


def garbage_events(method: str, params) -> object:
    """A node fault: the range query for events answered with something that is not change sets."""
    return ("result", "not change sets") if method == "state_queryStorage" else None


def take(u16: int) -> float:
    return u16 / 65535


@pytest.fixture
def pruned_node():
    state = ChainState(393, state_pruning=PRUNING)
    write_tricky_chain(state)  # block 1
    with SimNode(state) as node:
        yield node


def test_a_script_of_changes_is_recorded_once_each_at_its_block_with_its_cause(pruned_node, exporter_factory, tmp_path):
    state, db = pruned_node.state, tmp_path / "history.db"
    exporter = exporter_factory(pruned_node, scope=SCOPE, history_path=str(db))
    assert exporter.refresh() and recorded(db) == []  # block 1: the baseline

    # Four take changes in four consecutive blocks; a take set and set back; a child set
    # scheduled in the same block as a stake added, in another extrinsic.
    for block, value in zip(range(2, 6), (6000, 7000, 8000, 9000)):
        set_childkey_take(state, t.C2, 1, value)
        state.commit_block()
    set_childkey_take(state, t.M, 1, 5000)
    state.commit_block()  # 6
    set_childkey_take(state, t.M, 1, 3000)
    state.commit_block()  # 7
    schedule_children(state, t.P3, 1, [(t.HALF, t.Z)])
    add_stake(state, COLD, t.M, 1, 100 * t.RAO)
    state.commit_block()  # 8
    assert exporter.refresh()
    rows = recorded(db)
    assert brief(rows) == [
        (2, "take_changed", t.C2, "ChildKeyTakeSet"),
        (3, "take_changed", t.C2, "ChildKeyTakeSet"),
        (4, "take_changed", t.C2, "ChildKeyTakeSet"),
        (5, "take_changed", t.C2, "ChildKeyTakeSet"),
        (6, "take_changed", t.M, "ChildKeyTakeSet"),
        (7, "take_changed", t.M, "ChildKeyTakeSet"),
        (8, "pending_scheduled", t.P3, "SetChildrenScheduled"),
        (8, "own_stake_moved", t.M, "StakeAdded"),
        (8, "stake_weight_moved", t.M, "StakeAdded"),
    ]
    takes = [(json.loads(old), json.loads(new)) for *_, old, new in rows[:6]]
    assert takes == [
        (pytest.approx(take(11796)), pytest.approx(take(6000))), (pytest.approx(take(6000)), pytest.approx(take(7000))),
        (pytest.approx(take(7000)), pytest.approx(take(8000))), (pytest.approx(take(8000)), pytest.approx(take(9000))),
        (pytest.approx(take(3000)), pytest.approx(take(5000))), (pytest.approx(take(5000)), pytest.approx(take(3000))),
    ]
    assert [r[5] for r in rows] == [1, 1, 1, 1, 1, 1, 1, 2, 2]  # the extrinsic in its block
    assert all(r[6] is None for r in rows)  # exact blocks, no ranges
    served = exporter.scrape()
    assert series(served, "bittensor_validator_last_change_block", hotkey=t.C2, netuid=1, kind="take_changed") == 5
    assert series(served, "bittensor_validator_last_change_cause_info", hotkey=t.C2, netuid=1, kind="take_changed",
                  cause="ChildKeyTakeSet") == 1

    # Served by the API and the command, filtered by cause.
    status, _, body = exporter.get("/api/v1/events?cause=SetChildrenScheduled")
    answer = json.loads(body)
    assert status == 200 and [(e["block"], e["kind"], e["cause"], e["extrinsic"], e["backfilled"]) for e in answer["events"]] == [
        (8, "pending_scheduled", "SetChildrenScheduled", 1, False)]
    listed = subprocess.run([sys.executable, "-m", "exporter", "history", "--history.path", str(db), "--cause", "StakeAdded"],
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 2, listed.stderr
    assert all("cause=StakeAdded extrinsic 2" in line for line in listed.stdout.splitlines())

    # Stopped: two changes in the blocks it misses, then restarted at a later block.
    exporter.close()
    set_childkey_take(state, t.C3, 1, 100)
    state.commit_block()  # 9
    set_childkey_take(state, t.C3, 1, 200)
    state.commit_block()  # 10
    schedule_children(state, t.P2, 1, [])
    state.commit_block()  # 11
    state.commit_block()  # 12
    exporter = exporter_factory(pruned_node, scope=SCOPE, history_path=str(db))
    assert exporter.refresh()
    assert brief(recorded(db)[9:]) == [
        (9, "take_changed", t.C3, "ChildKeyTakeSet"),
        (10, "take_changed", t.C3, "ChildKeyTakeSet"),
        (11, "pending_scheduled", t.P2, "SetChildrenScheduled"),
    ]

    # Stopped longer than the node keeps state: a change beyond the window is one net change
    # over the blocks it may lie in, flagged; one inside the window is exact.
    exporter.close()
    set_childkey_take(state, t.C1, 1, 500)
    state.commit_block()  # 13
    state.advance(56)  # 14..69
    set_childkey_take(state, t.C4, 1, 700)
    state.advance(4)  # 70..73: the change in 70
    exporter = exporter_factory(pruned_node, scope=SCOPE, history_path=str(db))
    assert exporter.refresh()
    oldest_readable = 73 - PRUNING
    assert [(r[0], r[1], r[2], r[4], r[6]) for r in recorded(db)[12:]] == [
        (oldest_readable - 1, "take_changed", t.C1, "gap", 13),
        (70, "take_changed", t.C4, "ChildKeyTakeSet", None),
    ]
    # Nothing is recorded twice: another refresh with nothing new adds nothing.
    count = len(recorded(db))
    state.commit_block()
    assert exporter.refresh() and len(recorded(db)) == count


def test_a_pending_set_applied_at_its_epoch_and_the_permits_the_epoch_decides(exporter_factory, tmp_path):
    state = ChainState(393)
    write_tricky_chain(state)
    with SimNode(state) as node:
        db = tmp_path / "history.db"
        exporter = exporter_factory(node, scope=SCOPE, history_path=str(db))
        assert exporter.refresh()
        schedule_children(state, t.P3, 1, [(t.MAX, t.Z)], cooldown=10)
        state.commit_block()  # 2: due after block 12
        advance_to(state, 200)
        assert exporter.refresh()
        ran = advance_to(state, 400)
        epoch = next(b for b, netuids in ran.items() if 1 in netuids)
        # Most permits go at that epoch: the exporter holds such a drop back until a second read confirms it.
        if not exporter.refresh():
            state.commit_block()
            assert exporter.refresh()
    rows = recorded(db)
    assert brief(rows)[:1] == [(2, "pending_scheduled", t.P3, "SetChildrenScheduled")]
    applied = [r for r in rows if r[4] == "SetChildren"]
    assert [(r[0], r[1], r[2]) for r in applied] == [
        (epoch, "pending_applied", t.P3), (epoch, "edge_added", t.Z), (epoch, "edge_removed", t.M),
        (epoch, "stake_weight_moved", t.M),  # M lost what P3 gave it: the set is the cause
    ]
    assert all(r[5] is None for r in applied)  # the block step, not an extrinsic
    permits = [r for r in rows if r[1].startswith("permit_")]
    assert permits and all((r[0], r[4]) == (epoch, "epoch") for r in permits if r[3] == 1)


def test_an_endpoint_that_refuses_range_queries_is_read_block_by_block(exporter_factory, tmp_path):
    """Public endpoints run with --rpc-methods safe refuse state_queryStorage (unsafe): the events come
    from one state_queryStorageAt a block instead, with the same result."""
    state = ChainState(393, deny_unsafe_rpc=True)
    write_tricky_chain(state)
    with SimNode(state) as node:
        db = tmp_path / "history.db"
        exporter = exporter_factory(node, scope=SCOPE, history_path=str(db))
        assert exporter.refresh()
        set_childkey_take(state, t.C2, 1, 6000)
        state.commit_block()  # 2
        set_childkey_take(state, t.C2, 1, 7000)
        state.commit_block()  # 3
        state.commit_block()  # 4
        assert exporter.refresh()
        set_childkey_take(state, t.C2, 1, 8000)
        state.commit_block()  # 5
        assert exporter.refresh()
    assert brief(recorded(db)) == [(b, "take_changed", t.C2, "ChildKeyTakeSet") for b in (2, 3, 5)]


def test_events_that_cannot_be_read_hold_history_back_but_not_the_metrics(exporter_factory, tmp_path):
    """An endpoint that answers the events with garbage: the metrics are published, history records
    nothing until a read of those blocks works, then each change at its block; past the catch-up
    limit, the changes are recorded as net changes over a gap instead of never."""
    state = ChainState(393)
    write_tricky_chain(state)
    with SimNode(state) as node:
        db = tmp_path / "history.db"
        exporter = exporter_factory(node, scope=SCOPE, history_path=str(db), history=replace(
            HistoryConfig(path=str(db)), catch_up_blocks=4))
        assert exporter.refresh()
        node.fault = garbage_events
        set_childkey_take(state, t.C2, 1, 6000)
        state.commit_block()  # 2
        assert exporter.refresh()  # published
        assert exporter.snapshot.chain.block == 2 and recorded(db) == []
        assert series(exporter.scrape(), "bittensor_exporter_history_writes_total", result="error") == 1
        node.fault = None
        state.commit_block()  # 3
        assert exporter.refresh()
        assert brief(recorded(db)) == [(2, "take_changed", t.C2, "ChildKeyTakeSet")]
        # Garbage again, now for longer than the catch-up limit: a net change, flagged, not nothing.
        node.fault = garbage_events
        set_childkey_take(state, t.C2, 1, 7000)
        state.advance(5)  # 4..8
        assert exporter.refresh()
    assert [(r[0], r[1], r[4], r[6]) for r in recorded(db)[1:]] == [(8, "take_changed", "gap", 4)]


def test_on_a_runtime_whose_take_event_names_the_subnet_a_take_set_and_set_back_is_placed_by_it(exporter_factory, tmp_path):
    """The newer runtime's ChildKeyTakeSet(hotkey, netuid, take): decoded by its metadata's layout, the
    subnet comes from the event, not from which take moved."""
    from simnode.state import NEWER_RUNTIME_SPEC

    state = ChainState(NEWER_RUNTIME_SPEC)
    write_tricky_chain(state)
    with SimNode(state) as node:
        db = tmp_path / "history.db"
        exporter = exporter_factory(node, scope=SCOPE, history_path=str(db))
        assert exporter.refresh()
        set_childkey_take(state, t.C2, 1, 9000)
        state.commit_block()  # 2
        set_childkey_take(state, t.C2, 1, 11796)  # back to where it was
        state.commit_block()  # 3
        assert exporter.refresh()
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in recorded(db)] == [
        (2, "take_changed", t.C2, 1, "ChildKeyTakeSet"), (3, "take_changed", t.C2, 1, "ChildKeyTakeSet"),
    ]


def test_a_cause_the_exporter_does_not_write_is_not_served_as_a_label():
    """The history file is read back at start: a cause that is not one of the exporter's own (a file
    edited by hand, or damaged) is not turned into a label value."""
    from exporter.serving.change_counters import render_last_changes

    served = render_last_changes({
        (t.C2, 1, "take_changed"): (5, 60.0, "ChildKeyTakeSet", 60.0),
        (t.M, 1, "take_changed"): (6, 72.0, 'x"} 1\nbittensor_injected 1', 72.0),
    }).decode()
    assert f'cause="ChildKeyTakeSet"' in served and "injected" not in served
    assert f'bittensor_validator_last_change_block{{hotkey="{t.M}",netuid="1",kind="take_changed"}} 6' in served
