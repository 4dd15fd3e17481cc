"""The activity part of history's recorded state in SQLite (schema migration 4): each tracked
validator's Active flag and each tracked hotkey's delegate take, so a restarted exporter still sees
them change (``activity_changes``)."""

from __future__ import annotations

import sqlite3

from exporter.snapshot.changes import HistoryState

MIGRATION = """
    CREATE TABLE activity_state (
        hotkey TEXT NOT NULL, netuid INTEGER NOT NULL, active INTEGER NOT NULL, block INTEGER NOT NULL,
        PRIMARY KEY (hotkey, netuid)
    ) WITHOUT ROWID;
    CREATE TABLE delegate_state (
        hotkey TEXT PRIMARY KEY, take INTEGER NOT NULL, block INTEGER NOT NULL
    ) WITHOUT ROWID;
"""
TABLES = ("activity_state", "delegate_state")


def load_activity(c: sqlite3.Connection) -> tuple[dict, dict]:
    active = {(h, n): bool(flag) for h, n, flag in c.execute("SELECT hotkey, netuid, active FROM activity_state")}
    takes = {h: take for h, take in c.execute("SELECT hotkey, take FROM delegate_state")}
    return active, takes


def write_activity_diff(c: sqlite3.Connection, previous: HistoryState, state: HistoryState, block: int) -> None:
    """Only what changed (one dict comparison when nothing did)."""
    if state.active != previous.active:
        c.executemany("INSERT OR REPLACE INTO activity_state VALUES (?, ?, ?, ?)",
                      [(h, n, int(flag), block) for (h, n), flag in state.active.items() if previous.active.get((h, n)) != flag])
        c.executemany("DELETE FROM activity_state WHERE hotkey = ? AND netuid = ?",
                      [key for key in previous.active if key not in state.active])
    if state.delegate_takes != previous.delegate_takes:
        c.executemany("INSERT OR REPLACE INTO delegate_state VALUES (?, ?, ?)",
                      [(h, take, block) for h, take in state.delegate_takes.items() if previous.delegate_takes.get(h) != take])
        c.executemany("DELETE FROM delegate_state WHERE hotkey = ?",
                      [(h,) for h in previous.delegate_takes if h not in state.delegate_takes])
