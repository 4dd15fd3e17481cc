"""Drive the simulated chain through changes; check events, counters, the API and the CLI."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.config import ScopeConfig, WatchedHotkey
from tests import tricky_chain as t
from tests.harness import series

REPO = Path(__file__).resolve().parent.parent
SCOPE = ScopeConfig(min_stake_weight=100, watch=(
    WatchedHotkey(t.P, "parent", expected_take=0.09), WatchedHotkey(t.M, "M"), WatchedHotkey(t.C2, "C2"),
))
RAO = 10**9


@pytest.fixture
def recorded(tricky_node, exporter_factory, tmp_path):
    db = tmp_path / "history.db"
    exporter = exporter_factory(tricky_node, scope=SCOPE, history_path=str(db))
    assert exporter.refresh()
    return tricky_node.state, exporter, db


def events_in(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT block, kind, hotkey, netuid, parent, child, old_value, new_value FROM events ORDER BY id").fetchall()


def test_first_refresh_records_state_but_no_events(recorded):
    _, exporter, db = recorded
    assert events_in(db) == []
    samples = exporter.scrape()
    # No series is made up at 0: counters appear with the first change they count.
    assert not [k for k in samples if k[0] in ("bittensor_childkey_changes_total", "bittensor_subnet_changes_total")]
    assert series(samples, "bittensor_exporter_history_writes_total", result="ok") == 1


def test_each_change_becomes_one_event_and_one_counter_increment(recorded):
    state, exporter, db = recorded
    # block 2: P3 removes its child M; C2 changes its take; P2's pending set is applied
    state.delete("ChildKeys", [t.P3, 1])
    state.set("ChildKeys", [t.P2, 1], [(t.MAX, t.M)])
    state.set("ParentKeys", [t.M, 1], [(t.MAX, t.P2)])
    state.delete("PendingChildKeys", [1, t.P2])
    state.set("ChildkeyTake", [t.C2, 1], 6000)
    state.commit_block()
    assert exporter.refresh()
    kinds = {(kind, hotkey) for _, kind, hotkey, *_ in events_in(db)}
    assert ("edge_removed", t.M) in kinds
    assert ("proportion_changed", t.M) in kinds
    assert ("pending_applied", t.P2) in kinds
    assert ("take_changed", t.C2) in kinds
    removed = [e for e in events_in(db) if e[1] == "edge_removed"]
    assert removed == [(2, "edge_removed", t.M, 1, t.P3, t.M, "1.0", None)]
    take = [e for e in events_in(db) if e[1] == "take_changed"][0]
    assert json.loads(take[6]) == pytest.approx(11796 / 65535) and json.loads(take[7]) == pytest.approx(6000 / 65535)
    s = exporter.scrape()
    # Per validator for the watched M and C2; P2 is not watched: only its subnet's count.
    assert series(s, "bittensor_childkey_changes_total", hotkey=t.M, netuid=1, kind="edge_removed") == 1
    assert series(s, "bittensor_childkey_changes_total", hotkey=t.C2, netuid=1, kind="take_changed") == 1
    assert series(s, "bittensor_childkey_changes_total", hotkey=t.P2, netuid=1, kind="pending_applied") is None
    assert series(s, "bittensor_subnet_changes_total", netuid=1, kind="pending_applied") == 1
    assert series(s, "bittensor_subnet_changes_total", netuid=1, kind="take_changed") == 1
    assert series(s, "bittensor_childkey_changes_total", hotkey=t.C1, netuid=1, kind="take_changed") is None
    assert series(s, "bittensor_validator_last_change_block", hotkey=t.C2, netuid=1, kind="take_changed") == 2


def test_pending_scheduled_then_dropped_and_stake_moves(recorded):
    state, exporter, db = recorded
    state.set("PendingChildKeys", [1, t.P3], ([(t.HALF, t.Z)], 7500))
    state.set("TotalHotkeyAlpha", [t.M, 1], 60 * RAO)  # +20 % own stake
    state.commit_block()
    assert exporter.refresh()
    state.delete("PendingChildKeys", [1, t.P3])  # silently dropped: ChildKeys unchanged
    state.commit_block()
    assert exporter.refresh()
    events = events_in(db)
    scheduled = [e for e in events if e[1] == "pending_scheduled"]
    assert len(scheduled) == 1 and scheduled[0][0] == 2 and json.loads(scheduled[0][7])["cooldown_block"] == 7500
    assert [e[0] for e in events if e[1] == "pending_dropped"] == [3]
    moved = [e for e in events if e[1] == "own_stake_moved"]
    assert [(e[2], json.loads(e[6]), json.loads(e[7])) for e in moved] == [(t.M, 50.0, 60.0)]
    # M's stake weight only moved 720 -> 730 (1.4 %, under the 5 % threshold)
    assert not any(e[1] == "stake_weight_moved" for e in events)


def test_slow_drift_adds_up_to_one_event(recorded):
    state, exporter, db = recorded
    for own in (51, 52, 53):  # +2 % each refresh: no single step crosses 5 %
        state.set("TotalHotkeyAlpha", [t.M, 1], own * RAO)
        state.commit_block()
        assert exporter.refresh()
    moved = [e for e in events_in(db) if e[1] == "own_stake_moved"]
    assert [(json.loads(e[6]), json.loads(e[7])) for e in moved] == [(50.0, 53.0)]


def test_permit_lost_even_when_the_validator_leaves_scope(recorded):
    state, exporter, db = recorded
    state.set("ValidatorPermit", [1], [True] * 9 + [False, False])  # Z (uid 9) loses its permit
    state.commit_block()
    assert exporter.refresh()
    assert [(e[1], e[2]) for e in events_in(db) if e[1].startswith("permit")] == [("permit_lost", t.Z)]
    assert series(exporter.scrape(), "bittensor_subnet_changes_total", netuid=1, kind="permit_lost") == 1


def test_restart_compares_against_the_recorded_state(tricky_node, exporter_factory, tmp_path):
    db = tmp_path / "history.db"
    first = exporter_factory(tricky_node, scope=SCOPE, history_path=str(db))
    assert first.refresh()
    first.close()
    tricky_node.state.set("ChildkeyTake", [t.C3, 1], 0)
    changed_at, _ = tricky_node.state.commit_block()
    second = exporter_factory(tricky_node, scope=SCOPE, history_path=str(db))
    assert second.refresh()
    tricky_node.state.commit_block()
    assert second.refresh()
    # Once, at the block where the restarted exporter first saw it (its first refresh).
    assert [(e[0], e[1], e[2]) for e in events_in(db)] == [(changed_at, "take_changed", t.C3)]
    assert series(second.scrape(), "bittensor_exporter_history_writes_total", result="error") == 0


def test_history_is_written_on_the_refresh_thread_from_the_first_refresh(tricky_node, exporter_factory, tmp_path):
    """The exporter is built on this thread and refreshes on its own; no write may fail for it."""
    db = tmp_path / "history.db"
    exporter = exporter_factory(tricky_node, scope=SCOPE, history_path=str(db))
    assert exporter.refresh()
    tricky_node.state.set("ChildkeyTake", [t.C5, 1], 1234)
    changed_at, _ = tricky_node.state.commit_block()
    assert exporter.refresh()
    assert [(e[0], e[1], e[2]) for e in events_in(db)] == [(changed_at, "take_changed", t.C5)]
    s = exporter.scrape()
    assert series(s, "bittensor_exporter_history_writes_total", result="ok") == 2
    assert series(s, "bittensor_exporter_history_writes_total", result="error") == 0


def test_events_api(recorded):
    state, exporter, db = recorded
    for take in (100, 200, 300):
        state.set("ChildkeyTake", [t.C4, 1], take)
        state.commit_block()
        assert exporter.refresh()
    status, _, body = exporter.get(f"/api/v1/events?hotkey={t.C4}&netuid=1&kind=take_changed&limit=2")
    page = json.loads(body)
    assert status == 200 and [e["new"] for e in page["events"]] == pytest.approx([300 / 65535, 200 / 65535])
    status, _, body = exporter.get(f"/api/v1/events?hotkey={t.C4}&limit=2&cursor={page['next_cursor']}")
    rest = json.loads(body)
    assert [e["new"] for e in rest["events"]] == pytest.approx([100 / 65535]) and rest["next_cursor"] is None
    assert json.loads(exporter.get("/api/v1/events?since=2099-01-01")[2])["events"] == []


@pytest.mark.parametrize("query, needle", [
    ("netuid=abc", "netuid"), ("limit=0", "limit"), ("limit=5000", "limit"), ("kind=exploded", "kind"),
    ("hotkey=nope", "hotkey"), ("since=yesterday", "since"), ("colour=red", "colour"), ("netuid=1&netuid=2", "netuid"),
])
def test_events_api_rejects_bad_parameters(recorded, query, needle):
    _, exporter, _ = recorded
    status, headers, body = exporter.get(f"/api/v1/events?{query}")
    assert status == 400 and headers["Content-Type"] == "application/json"
    assert needle in json.loads(body)["error"]


def test_events_api_can_be_disabled(tricky_node, exporter_factory):
    exporter = exporter_factory(tricky_node)  # no history: the API is off
    assert exporter.get("/api/v1/events")[0] == 404


def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "exporter", "history", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=60, input=stdin)


def test_cli_lists_filters_and_resets(recorded):
    state, exporter, db = recorded
    state.set("ChildkeyTake", [t.C5, 1], 42)
    state.commit_block()
    assert exporter.refresh()
    listed = cli("--history.path", str(db), "--hotkey", t.C5, "--netuid", "1", "--since", "2026-01-01", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [json.loads(line)["kind"] for line in listed.stdout.splitlines()] == ["take_changed"]
    table = cli("--history.path", str(db), "--kind", "take_changed")
    assert "take_changed" in table.stdout and t.C5 in table.stdout
    bad = cli("--history.path", str(db), "--netuid", "x")
    assert bad.returncode == 2 and "netuid" in bad.stderr and "Traceback" not in bad.stderr
    refused = cli("reset", "--history.path", str(db))
    assert refused.returncode == 2 and "--yes" in refused.stderr and events_in(db)
    done = cli("reset", "--yes", "--history.path", str(db))
    assert done.returncode == 0 and events_in(db) == []
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_cli_without_a_database(tmp_path):
    result = cli("--history.path", str(tmp_path / "none.db"))
    assert result.returncode == 1 and "no history database" in result.stderr
