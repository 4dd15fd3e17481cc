"""The SQLite history file: latest state, change events and trend samples.

One transaction per refresh, WAL mode and ``synchronous=FULL``: a crash or
kill at any moment leaves either the previous refresh or this one, never half
of it, and a committed event survives a power cut. Readers (the HTTP API, the
CLI) open their own read-only connections and never block the writer.
"""

from __future__ import annotations

import json
import math
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from exporter.history.activity_store import TABLES as ACTIVITY_TABLES, load_activity, write_activity_diff
from exporter.snapshot.changes import ChangeEvent, HistoryState, ValidatorRecord
from exporter.config import HistoryConfig
from exporter.history.schema import check_not_newer, migrate
from exporter.snapshot.model import Snapshot

# (block, time, cause, recorded) of a validator's last change of a kind: the block and chain time of
# the change, its cause (None: not attributed), and the chain time of the refresh that recorded it.
LastChange = tuple[int, float, Optional[str], float]

TIER_EVERY_REFRESH = 0
TIER_HOURLY = 1
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def storable_int(value: int):
    """``value`` as SQLite can store it in an INTEGER column.

    SQLite's integers are signed 64-bit; a chain u64 (a stake in rao, a block)
    beyond 2^63 - 1 would make the driver raise OverflowError mid-commit. Such
    a value is stored as the nearest REAL instead (15-16 significant digits):
    history keeps it, approximately, and the refresh goes on.
    """
    if _INT64_MIN <= value <= _INT64_MAX:
        return value
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


class HistoryWasReset(Exception):
    """The file was wiped (``history reset``) since its state was loaded."""


def _new_generation() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Retention:
    """How long samples are kept; the defaults are the config's."""

    every_refresh_seconds: float = HistoryConfig.samples_every_refresh_hours * 3600
    hourly_seconds: float = HistoryConfig.samples_hourly_days * 86400
    # False: only watched hotkeys are sampled (at mainnet scale, sampling all
    # ~8,000 validators costs tens of MB a day; see the README).
    sample_all: bool = HistoryConfig.samples_scope == "all"

    @classmethod
    def of(cls, history: HistoryConfig) -> "Retention":
        return cls(
            every_refresh_seconds=history.samples_every_refresh_hours * 3600,
            hourly_seconds=history.samples_hourly_days * 86400,
            sample_all=history.samples_scope == "all",
        )


def _connect(path: str, read_only: bool) -> sqlite3.Connection:
    if read_only:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    else:
        conn = sqlite3.connect(path, timeout=5, isolation_level=None)
        try:
            # Before anything writes (switching to WAL rewrites the header), so a
            # file from a newer exporter is left byte for byte as it was.
            check_not_newer(conn)
        except BaseException:
            conn.close()
            raise
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


class HistoryStore:
    def __init__(self, conn: sqlite3.Connection, path: str):
        self._conn = conn
        self.path = path

    @classmethod
    def open(cls, path: str) -> "HistoryStore":
        """Open (creating or upgrading) the history file for writing."""
        conn = _connect(path, read_only=False)
        try:
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        return cls(conn, path)

    def close(self) -> None:
        self._conn.close()

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in (Path(self.path), Path(self.path + "-wal")) if p.exists())

    # -- state ---------------------------------------------------------------

    def load_state(self) -> HistoryState:
        c = self._conn
        validators = {
            (h, n): ValidatorRecord(uid, bool(permit), own, weight, take, own_ref, weight_ref)
            for h, n, uid, permit, own, weight, take, own_ref, weight_ref in c.execute(
                "SELECT hotkey, netuid, uid, permit, own_alpha, stake_weight, childkey_take, own_ref, weight_ref FROM validator_state"
            )
        }
        edges = {(p, ch, n): int(q) for p, ch, n, q in c.execute("SELECT parent, child, netuid, proportion FROM edge_state")}
        pending = {
            (p, n): (tuple((int(q), child) for q, child in json.loads(children)), cooldown)
            for p, n, children, cooldown in c.execute("SELECT parent, netuid, children, cooldown_block FROM pending_state")
        }
        active, delegate_takes = load_activity(c)
        return HistoryState(validators, edges, pending, active, delegate_takes)

    def last_block(self) -> Optional[int]:
        """The block of the last refresh recorded (None: none yet, or a file from before causes were read)."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'last_block'").fetchone()
        return None if row is None else int(row[0])

    def last_block_time_ms(self) -> Optional[int]:
        """The Timestamp.Now of ``last_block`` (None: a file from before it was kept): how long ago the
        chain was there bounds how far it can have gone since."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'last_block_time_ms'").fetchone()
        return None if row is None else int(row[0])

    def first_block(self) -> Optional[int]:
        """The block of the first refresh recorded live (a backfill ends there)."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'first_block'").fetchone()
        return None if row is None else int(row[0])

    def backfill_progress(self) -> Optional[dict]:
        """{"start", "end", "done"} of the last backfill (done < end: interrupted), or None."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'backfill'").fetchone()
        return None if row is None else json.loads(row[0])

    def commit_backfill(self, events: list[ChangeEvent], progress: dict, generation: str,
                        baseline: Optional[tuple[Snapshot, HistoryState]] = None) -> None:
        """One backfilled chunk: its events and the progress, in one transaction (a kill resumes
        after the last chunk committed). ``baseline``: the state at the last block backfilled, for a
        file the live exporter has not written yet: it starts from there."""
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            if self.generation() != generation:
                raise HistoryWasReset()
            insert_events(c, events)
            c.execute("INSERT OR REPLACE INTO meta VALUES ('backfill', ?)", (json.dumps(progress),))
            if baseline is not None and self.last_block() is None:
                snapshot, state = baseline
                block = snapshot.chain.block
                _write_state_diff(c, HistoryState.empty(), state, block)
                c.execute("INSERT OR REPLACE INTO meta VALUES ('last_block', ?)", (str(block),))
                c.execute("INSERT OR REPLACE INTO meta VALUES ('last_block_time_ms', ?)", (_time_ms(snapshot),))
                c.execute("INSERT OR IGNORE INTO meta VALUES ('first_block', ?)", (str(block),))
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise

    def generation(self) -> Optional[str]:
        """The file's reset generation: it changes whenever the history is wiped."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return None if row is None else row[0]

    def ensure_generation(self) -> str:
        """The generation, giving a file that has none (new, or from an older exporter) one."""
        return self._meta_or_set("generation", _new_generation())

    def claim_chain(self, genesis_hash: str) -> str:
        """The genesis hash of the chain whose history this file holds: ``genesis_hash`` for a file
        that names none yet (new, just reset, or from an exporter before it was kept)."""
        return self._meta_or_set("genesis_hash", genesis_hash.lower())

    def _meta_or_set(self, key: str, value: str) -> str:
        """``meta[key]``, set to ``value`` first if the file has none, in one transaction."""
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            c.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (key, value))
            stored = c.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise
        return stored

    def last_changes(self, hotkeys: Iterable[str]) -> dict[tuple[str, int, str], LastChange]:
        """(hotkey, netuid, kind) -> (block, time, cause, recorded) of the newest event of each kind for
        ``hotkeys`` (newest by block: a backfill appends older events after newer ones); ``recorded``:
        when it was recorded, its own time for a row that does not say (older files, backfills)."""
        found: dict[tuple[str, int, str], LastChange] = {}
        for hotkey in sorted(set(hotkeys)):
            for netuid, kind, block, time, cause, recorded in self._conn.execute(
                "SELECT netuid, kind, block, time, cause, coalesce(recorded_time, time) FROM events"
                " WHERE hotkey = ? ORDER BY block, id", (hotkey,)
            ):
                found[(hotkey, netuid, kind)] = (block, time, cause, recorded)
        return found

    def commit_refresh(
        self,
        snapshot: Snapshot,
        previous: HistoryState,
        state: HistoryState,
        events: list[ChangeEvent],
        retention: Retention,
        watched: frozenset[str],
        generation: Optional[str] = None,
    ) -> None:
        """Write one refresh (state diff, events, samples, retention) in one transaction.

        With ``generation``, raises ``HistoryWasReset`` (writing nothing) if
        the file's generation is another one: ``previous`` is then not what
        the file holds.
        """
        block, now = snapshot.chain.block, storable_int(int(snapshot.chain.timestamp_seconds))
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            if generation is not None and self.generation() != generation:
                raise HistoryWasReset()
            _write_state_diff(c, previous, state, block)
            insert_events(c, events, float(snapshot.chain.timestamp_seconds))
            c.execute("INSERT OR REPLACE INTO meta VALUES ('last_block', ?)", (str(block),))
            c.execute("INSERT OR REPLACE INTO meta VALUES ('last_block_time_ms', ?)", (_time_ms(snapshot),))
            c.execute("INSERT OR IGNORE INTO meta VALUES ('first_block', ?)", (str(block),))
            self._write_samples(snapshot, now, retention, watched)
            c.execute("DELETE FROM samples WHERE tier = ? AND time < ?", (TIER_EVERY_REFRESH, now - retention.every_refresh_seconds))
            c.execute("DELETE FROM samples WHERE tier = ? AND time < ?", (TIER_HOURLY, now - retention.hourly_seconds))
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise

    def _write_samples(self, snapshot: Snapshot, now: int, retention: Retention, watched: frozenset[str]) -> None:
        c = self._conn
        hour = now // 3600
        last_hour = c.execute("SELECT value FROM meta WHERE key = 'last_hourly_sample'").fetchone()
        hourly = last_hour is None or int(last_hour[0]) != hour
        # Watched hotkeys wherever they are tracked, even outside the exported subnets.
        rows = list(snapshot.validators) if retention.sample_all else [v for v in snapshot.tracked if v.hotkey in watched]
        if hourly:
            c.execute("INSERT OR REPLACE INTO meta VALUES ('last_hourly_sample', ?)", (str(hour),))
        if not rows:
            return
        c.executemany("INSERT OR IGNORE INTO series (hotkey, netuid) VALUES (?, ?)", [(v.hotkey, v.netuid) for v in rows])
        ids = dict(((h, n), i) for i, h, n in c.execute("SELECT id, hotkey, netuid FROM series"))
        samples = []
        tiers = (TIER_EVERY_REFRESH, TIER_HOURLY) if hourly else (TIER_EVERY_REFRESH,)
        for v in rows:
            values = (_i(snapshot.chain.block), _i(v.own_alpha), _i(v.inherited_alpha), _i(v.root_tao), _i(v.inherited_root_tao),
                      v.stake_weight, v.childkey_take)
            samples.extend((tier, now, ids[(v.hotkey, v.netuid)], *values) for tier in tiers)
        c.executemany("INSERT OR REPLACE INTO samples VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", samples)

    def reset(self) -> None:
        """Delete every row (the schema stays) under a new generation, then give the space back.

        A running exporter sees the new generation before its next write and
        records a fresh baseline instead of diffing against state it holds in
        memory that the file no longer has.
        """
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            for table in ("events", "samples", "series", "validator_state", "edge_state", "pending_state", "meta", *ACTIVITY_TABLES):
                c.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
            c.execute("INSERT INTO meta VALUES ('generation', ?)", (_new_generation(),))
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("VACUUM")


def insert_events(c: sqlite3.Connection, events: Iterable[ChangeEvent], recorded_time: Optional[float] = None) -> None:
    """Append events, oldest block first, so ids follow the chain's order. ``recorded_time``: the
    chain time of the refresh that found them (None for a backfill)."""
    ordered = sorted(events, key=lambda e: (e.block, -1 if e.extrinsic is None else e.extrinsic))
    c.executemany(
        "INSERT INTO events (block, time, kind, hotkey, netuid, parent, child, old_value, new_value,"
        " cause, extrinsic, block_from, backfilled, recorded_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(_i(e.block), e.time, e.kind, e.hotkey, _i(e.netuid), e.parent, e.child, _json(e.old), _json(e.new),
          e.cause, e.extrinsic, _i(e.block_from), int(e.backfilled), recorded_time)
         for e in ordered],
    )


def _write_state_diff(c: sqlite3.Connection, previous: HistoryState, state: HistoryState, block: int) -> None:
    """Only rows that changed: an unchanged network costs no writes, and little CPU (``state_of``
    hands on the very record of a validator that did not change: ``is`` before ``!=``)."""
    before = previous.validators
    changed = [(k, r) for k, r in state.validators.items() if (old := before.get(k)) is not r and old != r]
    c.executemany(
        "INSERT OR REPLACE INTO validator_state VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(h, _i(n), _i(r.uid), int(r.permit), _i(r.own_alpha), r.stake_weight, r.take, _i(r.own_ref), r.weight_ref, _i(block))
         for (h, n), r in changed],
    )
    c.executemany("DELETE FROM validator_state WHERE hotkey = ? AND netuid = ?", _gone(before, state.validators))
    edges = [] if state.edges == previous.edges else [
        (p, ch, _i(n), str(q), _i(block)) for (p, ch, n), q in state.edges.items() if previous.edges.get((p, ch, n)) != q
    ]
    c.executemany("INSERT OR REPLACE INTO edge_state VALUES (?, ?, ?, ?, ?)", edges)
    c.executemany("DELETE FROM edge_state WHERE parent = ? AND child = ? AND netuid = ?", _gone(previous.edges, state.edges))
    c.executemany(
        "INSERT OR REPLACE INTO pending_state VALUES (?, ?, ?, ?, ?)",
        [
            (p, _i(n), json.dumps([[str(q), child] for q, child in children]), _i(cooldown), _i(block))
            for (p, n), (children, cooldown) in state.pending.items()
            if previous.pending.get((p, n)) != (children, cooldown)
        ],
    )
    c.executemany("DELETE FROM pending_state WHERE parent = ? AND netuid = ?", _gone(previous.pending, state.pending))
    write_activity_diff(c, previous, state, _i(block))


def _gone(before: dict, after: dict) -> list:
    """The keys of ``before`` not in ``after``, in ``before``'s order (none: one check in C)."""
    if after.keys() >= before.keys():
        return []
    return [k for k in before if k not in after]


def _i(value):
    """An INTEGER column's value (None stays NULL)."""
    return None if value is None else storable_int(value)


def _json(value) -> Optional[str]:
    return None if value is None else json.dumps(value)


def _time_ms(snapshot: Snapshot) -> str:
    """The snapshot's Timestamp.Now in ms, as kept in meta."""
    return str(round(snapshot.chain.timestamp_seconds * 1000))
