"""Wiping history while the exporter runs, and what history remembers across restarts."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

from exporter.history.store import HistoryStore, Retention
from exporter.history.writer import Diff, HistoryWriter
from exporter.snapshot.builder import build_snapshot
from tests import tricky_chain as t
from tests.test_history_store import SCOPE
from tests.test_snapshot import chain_read

WATCHED = frozenset({t.M})


def writer_at(path) -> HistoryWriter:
    return HistoryWriter(str(path), Retention(), stake_change_ratio=0.05, watched=WATCHED)


def snapshot(block: int, **overrides):
    return build_snapshot(chain_read(block=block, timestamp_ms=1_767_225_600_000 + block * 12_000, **overrides), SCOPE)


def event_count(path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]


def reset(path) -> None:
    store = HistoryStore.open(str(path))
    try:
        store.reset()
    finally:
        store.close()


def take_change(block: int):
    return snapshot(block, takes={**{(h, 1): v for h, v in t.TAKES_1.items() if v}, (t.M, 1): 6000})


def test_a_reset_while_running_records_a_new_baseline_not_false_events(tmp_path):
    db = tmp_path / "history.db"
    writer = writer_at(db)
    assert writer.record(snapshot(100)).ok and event_count(db) == 0
    reset(db)  # what `history reset --yes` does, from another process
    committed = writer.record(snapshot(101))
    assert committed.ok and committed.events == () and event_count(db) == 0, "the unchanged chain is a baseline"
    writer.close()

    restarted = writer_at(db)
    committed = restarted.record(snapshot(102))
    assert committed.ok and committed.events == (), "the baseline holds every edge and pending set"
    committed = restarted.record(take_change(103))
    assert [(e.kind, e.hotkey) for e in committed.events] == [("take_changed", t.M)]
    restarted.close()


def test_a_reset_between_diff_and_commit_commits_a_baseline(tmp_path):
    db = tmp_path / "history.db"
    writer = writer_at(db)
    writer.record(snapshot(100))
    changed = take_change(101)
    diff = writer.diff(changed)
    assert [e.kind for e in diff.events] == ["take_changed"]
    reset(db)
    committed = writer.commit(changed, diff)
    assert committed.ok and committed.events == () and event_count(db) == 0
    assert writer.record(take_change(102)).events == ()
    writer.close()


def test_the_last_change_of_each_kind_survives_a_restart(tmp_path):
    db = tmp_path / "history.db"
    writer = writer_at(db)
    writer.record(snapshot(100))
    writer.record(take_change(101))
    assert writer.last_changes == {(t.M, 1, "take_changed"): (101, 1_767_225_600 + 101 * 12, None, 1_767_225_600 + 101 * 12)}  # no events read: no cause
    writer.close()
    restarted = writer_at(db)
    restarted.record(take_change(150))  # nothing changed: the last change is still the one at 101
    assert restarted.last_changes == {(t.M, 1, "take_changed"): (101, 1_767_225_600 + 101 * 12, None, 1_767_225_600 + 101 * 12)}
    restarted.close()
    reset(db)
    again = writer_at(db)
    again.record(take_change(151))
    assert again.last_changes == {}, "a reset forgets them"
    again.close()


def test_a_file_from_an_older_exporter_gets_a_generation_without_losing_its_state(tmp_path):
    db = tmp_path / "history.db"
    writer = writer_at(db)
    writer.record(snapshot(100))
    writer.close()
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM meta WHERE key = 'generation'")  # as files written before generations
    restarted = writer_at(db)
    assert restarted.record(take_change(101)).events[0].kind == "take_changed", "its state was kept"
    restarted.close()


def test_a_change_found_by_a_catch_up_is_recorded_at_the_refresh_that_found_it(tmp_path):
    """A catch-up places a change at its own block, long before the refresh that found it: the
    alerts fire on the refresh's time (news now), kept across a restart; a row of an older file,
    which does not say, falls back to the change's own time."""
    db = tmp_path / "history.db"
    writer = writer_at(db)
    writer.record(snapshot(100))
    found = take_change(700)  # 600 blocks (2 h) later
    diff = writer.diff(found)
    placed = Diff(diff.state, tuple(replace(e, block=101, time=1_767_225_600 + 101 * 12) for e in diff.events))
    assert writer.commit(found, placed).ok
    expected = {(t.M, 1, "take_changed"): (101, 1_767_225_600 + 101 * 12, None, 1_767_225_600 + 700 * 12)}
    assert writer.last_changes == expected
    writer.close()
    restarted = writer_at(db)
    restarted.record(take_change(701))
    assert restarted.last_changes == expected
    restarted.close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE events SET recorded_time = NULL")
    older = writer_at(db)
    older.record(take_change(702))
    assert older.last_changes == {(t.M, 1, "take_changed"): (101, 1_767_225_600 + 101 * 12, None, 1_767_225_600 + 101 * 12)}
    older.close()
