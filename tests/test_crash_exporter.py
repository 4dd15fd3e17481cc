"""SIGKILL the real exporter process, 50 times, while it writes history from a changing chain.

Every time: the file passes ``PRAGMA integrity_check`` and holds every event the
exporter had logged as committed before it died.

The kills are aimed at the writes rather than at random times: the test sees
each write to the history file's WAL (``history.db-wal``) as it happens and
kills after the first, second or third write of the first (or, in a few runs,
the second) refresh the run commits, at once or a little later. So kills land
in the middle of a commit (frames written, commit frame not yet), between a
commit and its log line, and between commits; after each kill the WAL tells
which, and the test asserts that the first and the last each happened in a
fair share of the runs. The check after a kill alternates between leaving the
WAL as the kill left it (the next run recovers from it) and checkpointing it.

Each run is a separate process running the real command line
(``exporter.cli:main``, what ``python -m exporter`` runs), forked from a
process that has already imported the exporter (``tests/fork_server.py``), so
the 50 runs do not pay 50 interpreter start-ups.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import threading
import time
from pathlib import Path

from tests import tricky_chain as t
from tests.conftest import write_tricky_chain
from tests.fork_server import ForkServer
from tests.test_new_user import free_port
from tests.wal_watch import FileWrites, died_in_a_commit
from simnode import SIMNODE_GENESIS_HASH, ChainState, SimNode

KILLS = int(os.environ.get("EXPORTER_CRASH_RUNS", "50"))
QUIET = 0.05  # seconds without a write that end one refresh's burst of writes (its writes come within ms)
RUN_TIMEOUT = 30.0  # the exporter's first write comes well within this


def committed_events(stderr_lines: list[str]) -> int:
    """Events the exporter reported committed (it logs after each commit)."""
    total = 0
    for line in stderr_lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == "changes recorded":
            total += record["events"]
    return total


def aim(rng: random.Random, run: int) -> tuple[int, int, float]:
    """Where to kill: (which burst of writes, which write in it, seconds after that write).
    Every 16th run waits for its second refresh (a second costs a second: the interval)."""
    burst = 2 if run % 16 == 15 else 1
    write = rng.choice((1, 1, 1, 2, 3))
    offset = rng.choice((0.0, 0.0, rng.uniform(0, 0.002), rng.uniform(0.002, 0.05)))
    return burst, write, offset


class RunDied(AssertionError):
    pass


def kill_at_write(zygote: ForkServer, pid: int, writes: FileWrites, burst: int, write: int, offset: float) -> int:
    """Block until the chosen write, SIGKILL ``pid`` ``offset`` seconds after it; the WAL's
    size when the kill was sent."""
    deadline = time.monotonic() + RUN_TIMEOUT
    bursts = seen = 0
    while bursts < burst:
        # the first write of the next burst; a burst ends after QUIET seconds without a write
        while not writes.wait(0.5):
            if zygote.poll(pid) is not None:
                raise RunDied("the exporter exited on its own")
            if time.monotonic() > deadline:
                raise RunDied(f"no history write within {RUN_TIMEOUT:.0f} s")
        bursts, seen = bursts + 1, 1
        while bursts < burst and writes.wait(QUIET):
            pass
    while seen < write and writes.wait(QUIET):  # the burst may end first: then kill between transactions
        seen += 1
    if offset:
        time.sleep(offset)  # the offset itself is what is being varied
    size = writes.path.stat().st_size if writes.path.exists() else 0
    os.kill(pid, signal.SIGKILL)
    return size


def test_sigkill_during_history_writes_never_corrupts_or_loses_events(tmp_path):
    state = ChainState()
    write_tricky_chain(state)
    stop = threading.Event()

    def churn():  # a new block with changed takes and stakes every 50 ms
        take = 0
        while not stop.wait(0.05):
            take = (take + 97) % 11796
            for i, hotkey in enumerate(t.CHILDREN):
                state.set("ChildkeyTake", [hotkey, 1], (take + i) % 11796)
            state.set("TotalHotkeyAlpha", [t.M, 1], (40 + take % 30) * t.RAO)
            state.commit_block()

    db = tmp_path / "history.db"
    wal = Path(f"{db}-wal")
    config = tmp_path / "config.yaml"
    log = tmp_path / "exporter.log"
    rng = random.Random(int(os.environ.get("EXPORTER_CRASH_SEED", "11")))
    landed = {"during a commit": 0, "after a commit, before its log line": 0, "between commits": 0}
    in_file = 0
    with SimNode(state) as node, ForkServer(["exporter.*"]) as zygote, FileWrites(wal) as writes:
        config.write_text(
            f"chain:\n  endpoints: [{node.url}]\n  genesis_hash: '{SIMNODE_GENESIS_HASH}'\nrefresh:\n  interval_seconds: 1\n"
            f"scope:\n  min_stake_weight: 100\nhistory:\n  path: {db}\n  samples_scope: all\n"
        )
        churner = threading.Thread(target=churn, daemon=True)
        churner.start()
        survived_at_least = 0
        try:
            for run in range(KILLS):
                writes.drain()  # the test's own checkpoint after the previous run
                wal_before = wal.read_bytes() if wal.exists() else b""
                pid = zygote.spawn(
                    "exporter.cli:main",
                    ["--config.file", str(config), "--web.listen-address", f"127.0.0.1:{free_port()}", "--log.format", "json"],
                    stderr=log,
                )
                try:
                    size_at_kill = kill_at_write(zygote, pid, writes, *aim(rng, run))
                except RunDied as error:
                    raise AssertionError(f"run {run}: {error}; its log:\n{log.read_text()}") from None
                assert zygote.wait(pid) == -signal.SIGKILL
                # Before anything opens the database: WAL bytes the run wrote that recovery
                # will discard (an unfinished commit), or a WAL still growing after the kill
                # was sent, mean the kill landed during a commit.
                during_commit = wal.stat().st_size > size_at_kill or died_in_a_commit(wal_before, db, tmp_path / "scratch")
                before_kill = in_file
                # Read-only, the check leaves the WAL as the kill left it, for the next run to
                # recover from; read-write, closing it checkpoints the WAL into the database.
                hot_wal = rng.random() < 0.5
                conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True) if hot_wal else sqlite3.connect(db)
                try:
                    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
                    created = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'events'").fetchone()
                    in_file = conn.execute("SELECT count(*) FROM events").fetchone()[0] if created else 0
                finally:
                    conn.close()
                logged = committed_events(log.read_text().splitlines())
                survived_at_least += logged
                assert in_file >= survived_at_least, f"run {run}: an event logged as committed is missing"
                if during_commit:
                    landed["during a commit"] += 1
                elif in_file - before_kill > logged:
                    landed["after a commit, before its log line"] += 1
                else:
                    landed["between commits"] += 1
        finally:
            stop.set()
            churner.join()
    print(f"kills landed: {landed}; events committed and logged: {survived_at_least}")
    assert survived_at_least > 0, "the exporter committed changes between the kills"
    # typically about half of the kills land during a commit and most of the rest between commits
    assert landed["during a commit"] >= KILLS // 10, f"too few kills landed while a commit was being written: {landed}"
    assert landed["between commits"] >= KILLS // 10, f"too few kills landed between commits: {landed}"
