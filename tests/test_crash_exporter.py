"""SIGKILL the real exporter process, 50 times, while it writes history from a changing chain.

Every time: the file passes ``PRAGMA integrity_check`` and holds every event the
exporter had logged as committed before it died.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests import tricky_chain as t
from tests.conftest import write_tricky_chain
from simnode import ChainState, SimNode
from tests.test_new_user import free_port

REPO = Path(__file__).resolve().parent.parent
KILLS = int(os.environ.get("EXPORTER_CRASH_RUNS", "50"))


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
    config = tmp_path / "config.yaml"
    rng = random.Random(11)
    with SimNode(state) as node:
        config.write_text(
            f"chain:\n  endpoints: [{node.url}]\nrefresh:\n  interval_seconds: 1\n"
            f"scope:\n  min_stake_weight: 100\nhistory:\n  path: {db}\n  samples_scope: all\n"
        )
        churner = threading.Thread(target=churn, daemon=True)
        churner.start()
        survived_at_least = 0
        try:
            for _ in range(KILLS):
                proc = subprocess.Popen(
                    [sys.executable, "-m", "exporter", "--config.file", str(config), "--web.listen-address", f"127.0.0.1:{free_port()}",
                     "--log.format", "json"],
                    cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                )
                lines: list[str] = []
                reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
                reader.start()
                time.sleep(rng.uniform(1.0, 3.5))
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                reader.join(timeout=5)
                proc.stderr.close()
                if not db.exists():
                    continue  # killed before it created the file
                with sqlite3.connect(db) as conn:
                    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
                    created = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'events'").fetchone()
                    in_file = conn.execute("SELECT count(*) FROM events").fetchone()[0] if created else 0
                survived_at_least += committed_events(lines)
                assert in_file >= survived_at_least, "an event logged as committed is missing"
        finally:
            stop.set()
            churner.join()
    assert survived_at_least > 0, "the exporter committed changes between the kills"
