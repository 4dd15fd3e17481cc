"""SIGTERM stops the real exporter process within 10 s with exit code 0, whatever it is doing:
idle between refreshes, stalled on a node that does not answer (the refresh timeout is
minutes), or in the middle of a history commit."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import pytest

from exporter.history.store import HistoryStore
from simnode import SIMNODE_GENESIS_HASH, SimNode
from tests.test_new_user import free_port
from tests.wal_watch import FileWrites

REPO = Path(__file__).resolve().parent.parent
LIMIT_SECONDS = 10.0


class ExporterProcess:
    """``python -m exporter`` with JSON logs; its log lines are read as they come."""

    def __init__(self, tmp_path: Path, endpoint: str, *, history: Optional[Path] = None, extra: str = ""):
        config = tmp_path / "config.yaml"
        config.write_text(
            f"chain:\n  endpoints: [{endpoint}]\n  genesis_hash: '{SIMNODE_GENESIS_HASH}'\n"  # timeouts stay at their defaults: 30 s a response, 120 s a refresh
            f"scope:\n  min_stake_weight: 100\n"
            f"history:\n  path: {history or tmp_path / 'history.db'}\n{extra}"
        )
        self.lines: list[dict] = []
        self.raw: list[str] = []
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "exporter", "--config.file", str(config),
             "--web.listen-address", f"127.0.0.1:{free_port()}", "--log.format", "json"],
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.raw.append(line)
                try:
                    self.lines.append(json.loads(line))
                except ValueError:
                    pass
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for_log(self, event: str, timeout: float = 30) -> dict:
        def found() -> Optional[dict]:
            return next((line for line in self.lines if line.get("event") == event), None)

        with self._changed:
            if not self._changed.wait_for(lambda: found() or self.proc.poll() is not None, timeout):
                raise AssertionError(f"no {event!r} log line in {timeout} s:\n{''.join(self.raw)}")
            line = found()
        assert line is not None, f"the exporter exited before logging {event!r}:\n{''.join(self.raw)}"
        return line

    def terminate_and_time(self) -> tuple[float, int]:
        """SIGTERM; seconds until the process exited, and its exit code."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"still running 30 s after SIGTERM:\n{''.join(self.raw)}") from None
        seconds = time.monotonic() - started
        self._reader.join(timeout=5)
        return seconds, code

    def assert_clean_exit(self, seconds: float, code: int) -> None:
        log = "".join(self.raw)
        assert code == 0, f"exit code {code}:\n{log}"
        assert seconds < LIMIT_SECONDS, f"took {seconds:.1f} s to stop:\n{log}"
        assert "Traceback" not in log and "never retrieved" not in log, log
        assert all(line.startswith("{") for line in self.raw), f"a log line that is not JSON:\n{log}"
        assert self.lines[-1]["event"] == "stopped", log

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def exporter_process(tmp_path):
    started: list[ExporterProcess] = []

    def start(endpoint: str, directory: str, **kwargs) -> ExporterProcess:
        (tmp_path / directory).mkdir(exist_ok=True)
        process = ExporterProcess(tmp_path / directory, endpoint, **kwargs)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def on_first(method: str, action: tuple) -> tuple[Callable, threading.Event]:
    """A fault applying ``action`` to every ``method`` request, and an event set at the first."""
    seen = threading.Event()

    def fault(name, params):
        if name != method:
            return None
        seen.set()
        return action

    return fault, seen


def test_sigterm_stops_the_exporter_in_every_state(tricky_node, exporter_process, tmp_path):
    """Three exporters, started at once (their start-ups overlap), each caught in one state:

    - stalled: the node stops answering mid-read; the refresh would wait a 30 s response
      timeout (twice) of its 120 s; SIGTERM cancels the read and the process exits at once;
    - idle: the first refresh is done and the next is a minute away;
    - mid-commit: SIGTERM at the first write of the first commit to the history WAL; the
      commit completes, every row of it is in the file.
    """
    state = tricky_node.state
    with SimNode(state) as stalling:
        stalling.fault, stalled = on_first("state_queryStorageAt", ("delay", 300))
        db = tmp_path / "commit" / "history.db"
        db.parent.mkdir()
        HistoryStore.open(str(db)).close()  # migrated, in WAL mode: the refresh's commit is its first WAL write
        with FileWrites(Path(f"{db}-wal")) as writes:
            writes.drain()
            processes = {
                "stalled refresh": exporter_process(stalling.url, directory="stalled"),
                "idle": exporter_process(tricky_node.url, directory="idle"),
                "mid history commit": exporter_process(tricky_node.url, directory="commit", history=db),
            }
            assert writes.wait(30), "the exporter wrote to its history"
            times = {"mid history commit": processes["mid history commit"].terminate_and_time()}
        assert stalled.wait(30), "the exporter reached the stalled request"
        times["stalled refresh"] = processes["stalled refresh"].terminate_and_time()
        processes["idle"].wait_for_log("refresh")
        times["idle"] = processes["idle"].terminate_and_time()
    print("stopped in: " + ", ".join(f"{name} {seconds:.2f} s" for name, (seconds, _) in times.items()))
    for name, (seconds, code) in times.items():
        processes[name].assert_clean_exit(seconds, code)
    assert times["stalled refresh"][0] < 3, "nothing waits out a timeout"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM validator_state").fetchone()[0] > 0, "the commit finished"
