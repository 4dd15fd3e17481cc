"""The history file on real SQLite: migrations, retention, crash safety, read-only and full disks."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from exporter.snapshot.changes import HistoryState, state_of
from exporter.config import ScopeConfig
from exporter.history.schema import MIGRATIONS, SCHEMA_VERSION, SchemaTooNew, migrate
from exporter.history.store import HistoryStore, Retention
from exporter.history.writer import HistoryWriter
from exporter.snapshot.builder import build_snapshot
from tests import tricky_chain as t
from tests.fork_server import ForkServer
from tests.wal_watch import FileWrites, died_in_a_commit
from tests.test_snapshot import chain_read

SCOPE = ScopeConfig(min_stake_weight=100)
CRASH_RUNS = int(os.environ.get("HISTORY_CRASH_RUNS", "20"))  # the real exporter gets 50: test_crash_exporter.py


def snapshot_at(block: int, **overrides):
    overrides.setdefault("timestamp_ms", block * 12_000)
    return build_snapshot(chain_read(block=block, **overrides), SCOPE)


def integrity(path) -> str:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def test_migrates_an_older_file_in_place(tmp_path):
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=1)
    conn.execute("INSERT INTO events (block, time, kind, hotkey, netuid) VALUES (5, 60.0, 'take_changed', 'h', 1)")
    conn.close()
    store = HistoryStore.open(str(path))
    store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == len(MIGRATIONS)
        assert conn.execute("SELECT block, kind FROM events").fetchall() == [(5, "take_changed")]
        assert conn.execute("SELECT count(*) FROM samples").fetchone()[0] == 0


def test_a_file_from_a_newer_exporter_is_refused_untouched(tmp_path):
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE future (x)")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = path.read_bytes()
    with pytest.raises(SchemaTooNew, match="upgrade the exporter"):
        HistoryStore.open(str(path))
    assert path.read_bytes() == before


def test_retention_keeps_every_refresh_for_a_day_and_hourly_for_longer(tmp_path):
    store = HistoryStore.open(str(tmp_path / "h.db"))
    retention = Retention(every_refresh_seconds=3600, hourly_seconds=3 * 3600, sample_all=True)
    state = HistoryState.empty()
    for minute in range(0, 6 * 60, 10):  # six hours, a refresh every 10 minutes
        snap = snapshot_at(1 + minute // 10, timestamp_ms=(1_800_000_000 + minute * 60) * 1000)
        new_state, events = state_of(snap, state, 0.05)
        store.commit_refresh(snap, state, new_state, events, retention, frozenset())
        state = new_state
    rows = store._conn.execute("SELECT tier, min(time), max(time), count(DISTINCT time) FROM samples GROUP BY tier").fetchall()  # noqa: SLF001
    by_tier = {tier: (lo, hi, n) for tier, lo, hi, n in rows}
    last = 1_800_000_000 + 350 * 60
    assert by_tier[0][2] == 7 and last - by_tier[0][0] <= 3600  # the last hour, every refresh
    assert last - by_tier[1][0] <= 3 * 3600 and by_tier[1][2] in (3, 4)  # one an hour, three hours back
    store.close()


def reported(out: Path) -> list[int]:
    """The committed-event totals a crash child printed (complete lines only)."""
    text = out.read_text() if out.exists() else ""
    return [int(line) for line in text.split("\n")[:-1]]


def test_killed_writer_leaves_an_intact_file_and_every_committed_event(tmp_path):
    """A writer that commits refresh after refresh is killed after 1-6 reported commits, at a
    write to its WAL (so mostly inside a commit). Every run is forked from a process that has
    imported the writer already (tests/fork_server.py): no run pays for an interpreter."""
    path = tmp_path / "crash.db"
    wal = Path(f"{path}-wal")
    rng = random.Random(7)
    committed = 0
    landed = {"in its WAL writes": 0, "after its commit frame, before it was reported": 0, "elsewhere": 0}
    with ForkServer(["tests.history_crash_child"]) as zygote, FileWrites(wal) as wal_writes:
        for run in range(CRASH_RUNS):
            wal_before = wal.read_bytes() if wal.exists() else b""
            out = tmp_path / f"writer-{run}.out"
            with FileWrites(out) as printed:
                pid = zygote.spawn("tests.history_crash_child:main", [str(path)], stdout=out)
                lines = rng.randint(1, 6)
                while len(reported(out)) < lines:  # each line: one more commit
                    if not printed.wait(1.0):
                        assert zygote.poll(pid) is None, "writer died on its own"
            nth, offset = rng.choice((1, 1, 2, 3)), rng.choice((0.0, 0.0, rng.uniform(0, 0.001)))
            wal_writes.drain()  # the writes of the commits it reported
            for _ in range(nth):  # a write of a commit still to come
                assert wal_writes.wait(10.0), "writer stopped writing"
            if offset:
                time.sleep(offset)  # the offset itself is what is being varied
            size_at_kill = wal.stat().st_size
            os.kill(pid, signal.SIGKILL)
            assert zygote.wait(pid) == -signal.SIGKILL
            in_writes = wal.stat().st_size > size_at_kill or died_in_a_commit(wal_before, path, tmp_path / "scratch")
            committed = max([committed, *reported(out)])
            # Read-only, the check leaves the WAL as the kill left it, for the next run to
            # recover from; read-write, closing it checkpoints the WAL into the database.
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True) if rng.random() < 0.5 else sqlite3.connect(path)
            try:
                assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
                in_file = conn.execute("SELECT count(*) FROM events").fetchone()[0]
            finally:
                conn.close()
            assert in_file >= committed
            if in_writes:
                landed["in its WAL writes"] += 1
            elif in_file > committed:  # the run counts from what is in the file: one commit went unreported
                landed["after its commit frame, before it was reported"] += 1
            else:
                landed["elsewhere"] += 1
    assert committed > 0
    in_commit = landed["in its WAL writes"] + landed["after its commit frame, before it was reported"]
    print(f"kills landed: {landed}")
    assert in_commit >= CRASH_RUNS // 4, f"too few kills landed inside a commit: {landed}"


@contextmanager
def small_filesystem(tmp_path: Path, size: str):
    mount = tmp_path / "fs"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs for the disk tests: {result.stderr.decode().strip()}")
        pytest.skip("mounting a small filesystem needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


class Writes:
    """A history writer and the results of its commits, as the refresh thread would count them."""

    def __init__(self, path: Path):
        self.writer = HistoryWriter(str(path), Retention(sample_all=True), stake_change_ratio=0.05)
        self.results = {"ok": 0, "error": 0}

    def record(self, snapshot) -> bool:
        ok = self.writer.record(snapshot).ok
        self.results["ok" if ok else "error"] += 1
        return ok

    def close(self) -> None:
        self.writer.close()


def make_writer(path: Path) -> tuple[Writes, dict]:
    writes = Writes(path)
    return writes, writes.results


def value(results: dict, result: str) -> int:
    return results[result]


def test_full_disk_is_counted_logged_and_retried(tmp_path):
    with small_filesystem(tmp_path, "2m") as fs:
        path = fs / "history.db"
        writer, metrics = make_writer(path)
        assert writer.record(snapshot_at(1))
        filler = fs / "filler"
        with open(filler, "wb", buffering=0) as f:  # take the rest of the disk
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
        ok = True
        for block in range(2, 12):  # changing takes: each refresh has events to write
            ok = writer.record(snapshot_at(block, takes={(t.C1, 1): block})) and ok
        assert not ok and value(metrics, "error") >= 1
        filler.unlink()
        assert writer.record(snapshot_at(20, takes={(t.C1, 1): 20}))
        assert integrity(path) == "ok"
        with sqlite3.connect(path) as conn:
            takes = [r[0] for r in conn.execute(
                "SELECT new_value FROM events WHERE kind = 'take_changed' AND hotkey = ? ORDER BY id", (t.C1,))]
        assert takes[-1] == str(20 / 65535), "the change is recorded once the disk has room again"
        writer.close()


def test_read_only_filesystem_is_counted_and_the_exporter_carries_on(tmp_path):
    with small_filesystem(tmp_path, "4m") as fs:
        path = fs / "history.db"
        writer, metrics = make_writer(path)
        assert writer.record(snapshot_at(1))
        writer.close()
        subprocess.run(["mount", "-o", "remount,ro", str(fs)], check=True)
        writer, metrics = make_writer(path)
        assert not writer.record(snapshot_at(2, takes={(t.C1, 1): 2}))
        assert value(metrics, "error") >= 1
        subprocess.run(["mount", "-o", "remount,rw", str(fs)], check=True)
        assert writer.record(snapshot_at(3, takes={(t.C1, 1): 3}))
        assert integrity(path) == "ok"
        writer.close()
