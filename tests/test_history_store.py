"""The history file on real SQLite: migrations, retention, crash safety, read-only and full disks."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
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
from tests.test_snapshot import chain_read

REPO = Path(__file__).resolve().parent.parent
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


def test_killed_writer_leaves_an_intact_file_and_every_committed_event(tmp_path):
    path = tmp_path / "crash.db"
    rng = random.Random(7)
    committed = 0
    for _ in range(CRASH_RUNS):
        child = subprocess.Popen([sys.executable, "-m", "tests.history_crash_child", str(path)], cwd=REPO,
                                 stdout=subprocess.PIPE, text=True)
        lines = rng.randint(1, 6)
        for _ in range(lines):
            line = child.stdout.readline()
            assert line, "writer died on its own"
            committed = max(committed, int(line))
        os.kill(child.pid, signal.SIGKILL)  # mid-way through the next transaction, most likely
        child.wait()
        child.stdout.close()
        assert integrity(path) == "ok"
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT count(*) FROM events").fetchone()[0] >= committed


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
