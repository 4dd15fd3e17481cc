"""One running exporter per history file: a second one started on the same file refuses to start
and names the first; the readers go on reading; a killed exporter leaves no stale lock."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.history.store import HistoryStore
from exporter.history.writer_lock import HistoryInUse, WriterLock
from tests.process_log import LogLines

REPO = Path(__file__).resolve().parent.parent
EXIT_RUNTIME = 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_second_holder_is_refused_and_told_who_holds_it(tmp_path):
    path = str(tmp_path / "h.db")
    with WriterLock(path):
        with pytest.raises(HistoryInUse) as refused:
            WriterLock(path).acquire()  # flock is per open file: refused within one process too
        assert refused.value.holder == os.getpid()
        assert str(refused.value) == f"{path} is being recorded into by another exporter (pid {refused.value.holder})"
    with WriterLock(path):  # released: free again
        pass


def test_a_scribbled_lock_file_names_no_pid(tmp_path):
    path = str(tmp_path / "h.db")
    with WriterLock(path) as held:
        Path(held.path).write_text("not a pid, 99999999999\n")
        with pytest.raises(HistoryInUse) as refused:
            WriterLock(path).acquire()
    assert refused.value.holder is None
    assert str(refused.value).endswith("by another exporter")


def exporter(history: Path, *flags: str) -> subprocess.Popen:
    # An endpoint nothing listens on: the exporter runs (serving up 0) without a chain.
    return subprocess.Popen(
        [sys.executable, "-m", "exporter", "--history.path", str(history), "--log.format", "json",
         "--web.listen-address", f"127.0.0.1:{free_port()}", *flags],
        cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "BITTENSOR_EXPORTER_ENDPOINTS": f"ws://127.0.0.1:{free_port()}"})


def test_a_second_exporter_on_the_same_history_refuses_to_start_and_a_killed_one_leaves_no_lock(tmp_path):
    history = tmp_path / "history.db"
    HistoryStore.open(str(history)).close()
    first = exporter(history)
    first_log = LogLines(first.stdout)
    try:
        first_log.wait_for(lambda lines: any('"event": "started"' in line for line in lines), timeout=60,
                           what="the first exporter started")
        second = exporter(history)
        output = LogLines(second.stdout)
        assert second.wait(timeout=60) == EXIT_RUNTIME
        lines = [json.loads(line) for line in output.close().splitlines() if line.startswith("{")]
        refused = [line for line in lines if line.get("event") == "history in use"]
        assert len(refused) == 1 and refused[0]["holder_pid"] == first.pid and refused[0]["level"] == "error"
        assert "--history.path" in refused[0]["hint"]
        assert not any(line.get("event") == "started" for line in lines)

        # The readers are not writers: the history command reads while the first exporter runs.
        listed = subprocess.run([sys.executable, "-m", "exporter", "history", "--history.path", str(history)],
                                cwd=REPO, capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0 and "no matching events" in listed.stderr, listed.stderr
    finally:
        first.send_signal(signal.SIGKILL)  # no clean stop: the kernel drops the lock
        first.wait(timeout=30)
        first_log.close()
    third = exporter(history)
    third_log = LogLines(third.stdout)
    try:
        third_log.wait_for(lambda lines: any('"event": "started"' in line for line in lines), timeout=60,
                           what="an exporter started after the first was killed")
    finally:
        third.terminate()
        assert third.wait(timeout=30) == 0
        third_log.close()


def test_a_second_backfill_is_refused_but_a_backfill_beside_the_exporter_is_not(tmp_path):
    """Backfill writes before the history's start while the exporter writes after it: by design.
    Two backfills would both record the same past changes."""
    import io

    from exporter.backfill import run_backfill
    from exporter.config_load import load_config

    history = tmp_path / "h.db"
    config = tmp_path / "c.yaml"
    config.write_text(f'history:\n  path: "{history}"\n')
    backfill = dict(archive="ws://127.0.0.1:9", days=1, from_block=None, to_block=None, requests_per_second=1,
                    chunk=300)
    with WriterLock(str(history)), WriterLock(str(history), "history backfill") as running:
        assert running.path == f"{history}.backfill.lock"
        out = io.StringIO()
        assert run_backfill(load_config(str(config)), out=out, **backfill) == 1
        assert out.getvalue() == f"error: {history} is being recorded into by another history backfill (pid {os.getpid()})\n"
    # With only the exporter running, the backfill goes as far as the archive node (nothing listens there).
    with WriterLock(str(history)):
        out = io.StringIO()
        assert run_backfill(load_config(str(config)), out=out, **backfill) == 1
        assert "another" not in out.getvalue() and out.getvalue().startswith("error:")


def test_a_file_system_without_flock_runs_unlocked_rather_than_not_at_all(tmp_path, monkeypatch):
    import errno

    from exporter.history import writer_lock

    def no_flock(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(writer_lock.fcntl, "flock", no_flock)
    lock = WriterLock(str(tmp_path / "h.db"))
    assert lock.acquire() is False
    lock.release()

    def broken(fd, operation):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(writer_lock.fcntl, "flock", broken)
    with pytest.raises(OSError):
        WriterLock(str(tmp_path / "h.db")).acquire()


def test_the_pid_is_a_courtesy_a_full_disk_still_locks(tmp_path, monkeypatch):
    import errno

    from exporter.history import writer_lock

    def full(fd, data, offset):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer_lock.os, "pwrite", full)
    path = str(tmp_path / "h.db")
    with WriterLock(path):
        with pytest.raises(HistoryInUse) as refused:
            WriterLock(path).acquire()
        assert refused.value.holder is None  # no pid written: the message names none
