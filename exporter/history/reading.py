"""Read-only access to the history file, for the HTTP API and the ``history`` command, and the
writer's peek before it opens the file: short-lived read-only connections, never the writer's."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from exporter.history.store import _connect

MAX_PAGE = 1000


@dataclass(frozen=True)
class EventQuery:
    hotkey: Optional[str] = None
    netuid: Optional[int] = None
    kind: Optional[str] = None
    cause: Optional[str] = None
    since: Optional[float] = None  # unix seconds, inclusive
    until: Optional[float] = None  # exclusive
    before_id: Optional[int] = None  # pagination cursor: newest first
    limit: int = 100


def peek_last_block(path: str, key: str = "last_block") -> Optional[int]:
    """The last block recorded (``key`` "last_block_time_ms": its Timestamp.Now), read without
    opening the file for writing (None: no file, none yet, or unreadable: the writer reports that
    when it opens the file)."""
    if not Path(path).exists():
        return None
    try:
        conn = _connect(path, read_only=True)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return None if row is None else int(row[0])


def query_events(path: str, query: EventQuery) -> tuple[list[dict], Optional[int]]:
    """Events matching ``query``, newest first, and the cursor for the next page (or None)."""
    where, params = [], []
    for column, value in (("hotkey", query.hotkey), ("netuid", query.netuid), ("kind", query.kind), ("cause", query.cause)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if query.since is not None:
        where.append("time >= ?")
        params.append(query.since)
    if query.until is not None:
        where.append("time < ?")
        params.append(query.until)
    if query.before_id is not None:
        where.append("id < ?")
        params.append(query.before_id)
    sql = ("SELECT id, block, time, kind, hotkey, netuid, parent, child, old_value, new_value,"
           " cause, extrinsic, block_from, backfilled FROM events")
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ?"
    params.append(query.limit + 1)
    conn = _connect(path, read_only=True)
    try:
        rows = conn.execute(sql, params).fetchall()
    finally:
        conn.close()
    events = [_event_dict(row) for row in rows[: query.limit]]
    next_cursor = events[-1]["id"] if len(rows) > query.limit else None
    return events, next_cursor


def _event_dict(row: Iterable) -> dict:
    id_, block, time, kind, hotkey, netuid, parent, child, old, new, cause, extrinsic, block_from, backfilled = row
    return {
        "id": id_, "block": block, "time": time, "kind": kind, "hotkey": hotkey, "netuid": netuid,
        "parent": parent, "child": child,
        "old": json.loads(old) if old is not None else None,
        "new": json.loads(new) if new is not None else None,
        "cause": cause, "extrinsic": extrinsic, "block_from": block_from, "backfilled": bool(backfilled),
    }
