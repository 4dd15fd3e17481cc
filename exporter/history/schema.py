"""The history database's schema as numbered migrations, applied in place on open.

``PRAGMA user_version`` records the schema a file is at. A newer exporter
upgrades an older file step by step, each step in its own transaction; a file
written by a newer exporter is refused before anything touches it.
"""

from __future__ import annotations

import sqlite3

from exporter.history.activity_store import MIGRATION as ACTIVITY_MIGRATION

MIGRATIONS: tuple[str, ...] = (
    # 1: latest state and change events.
    """
    CREATE TABLE validator_state (
        hotkey TEXT NOT NULL, netuid INTEGER NOT NULL,
        uid INTEGER, permit INTEGER NOT NULL, own_alpha INTEGER NOT NULL,
        stake_weight REAL NOT NULL, childkey_take REAL NOT NULL,
        own_ref INTEGER NOT NULL, weight_ref REAL NOT NULL, block INTEGER NOT NULL,
        PRIMARY KEY (hotkey, netuid)
    ) WITHOUT ROWID;
    -- proportions are u64, beyond SQLite's signed 64-bit integers: stored as text.
    CREATE TABLE edge_state (
        parent TEXT NOT NULL, child TEXT NOT NULL, netuid INTEGER NOT NULL,
        proportion TEXT NOT NULL, block INTEGER NOT NULL,
        PRIMARY KEY (parent, child, netuid)
    ) WITHOUT ROWID;
    CREATE TABLE pending_state (
        parent TEXT NOT NULL, netuid INTEGER NOT NULL,
        children TEXT NOT NULL, cooldown_block INTEGER NOT NULL, block INTEGER NOT NULL,
        PRIMARY KEY (parent, netuid)
    ) WITHOUT ROWID;
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        block INTEGER NOT NULL, time REAL NOT NULL, kind TEXT NOT NULL,
        hotkey TEXT NOT NULL, netuid INTEGER NOT NULL,
        parent TEXT, child TEXT, old_value TEXT, new_value TEXT
    );
    CREATE INDEX events_by_hotkey ON events (hotkey, netuid, id);
    CREATE INDEX events_by_time ON events (time);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    """,
    # 2: periodic samples of the per-validator numbers, for trends.
    """
    CREATE TABLE series (
        id INTEGER PRIMARY KEY, hotkey TEXT NOT NULL, netuid INTEGER NOT NULL,
        UNIQUE (hotkey, netuid)
    );
    -- tier 0: every refresh (short retention); tier 1: hourly (long retention).
    -- Keyed by time first: retention is a range delete and needs no second index.
    CREATE TABLE samples (
        tier INTEGER NOT NULL, time INTEGER NOT NULL, series INTEGER NOT NULL REFERENCES series (id),
        block INTEGER NOT NULL, own_alpha INTEGER NOT NULL, inherited_alpha INTEGER NOT NULL,
        root_tao INTEGER NOT NULL, inherited_root_tao INTEGER NOT NULL,
        stake_weight REAL NOT NULL, childkey_take REAL NOT NULL,
        PRIMARY KEY (tier, time, series)
    ) WITHOUT ROWID;
    """,
    # 3: what caused each change (the chain's event, or a named silent cause), where in its
    # block, and for a change known only as a net change, the first block it may lie in.
    """
    ALTER TABLE events ADD COLUMN cause TEXT;
    ALTER TABLE events ADD COLUMN extrinsic INTEGER;
    ALTER TABLE events ADD COLUMN block_from INTEGER;
    ALTER TABLE events ADD COLUMN backfilled INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX events_by_block ON events (block);
    -- where the live history of an older file began, so a backfill ends there
    INSERT OR IGNORE INTO meta SELECT 'first_block', CAST(min(b) AS TEXT) FROM
        (SELECT min(block) AS b FROM validator_state UNION ALL SELECT min(block) FROM events)
        HAVING min(b) IS NOT NULL;
    """,
    # 4: each tracked validator's Active flag and each tracked hotkey's delegate take (activity_store.py).
    ACTIVITY_MIGRATION,
    # 5: when the exporter recorded each change (the chain time of the refresh that found it), which
    # after a catch-up or an outage is later than the change's own time; alerts fire on it.
    # NULL for older rows and backfilled ones: those were never news.
    """
    ALTER TABLE events ADD COLUMN recorded_time REAL;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNew(Exception):
    """The file was written by a newer exporter; nothing was changed."""


def schema_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def check_not_newer(conn: sqlite3.Connection) -> int:
    version = schema_version(conn)
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"the history database is at schema version {version}, but this exporter knows "
            f"versions up to {SCHEMA_VERSION}: upgrade the exporter or point history.path at another file"
        )
    return version


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Bring the file up to ``target``; returns the version it started at."""
    start = check_not_newer(conn)
    for version in range(start + 1, target + 1):
        # executescript would commit on its own; spell the transaction out so a
        # failing step leaves the file at the previous version.
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[version - 1]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return start


def _statements(script: str) -> list[str]:
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
