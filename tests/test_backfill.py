"""``history backfill`` over the real wire from an archive node: the events equal what a live exporter
recorded over the same blocks, an interrupted backfill resumes to the same result, and requests
keep to the budget."""

from __future__ import annotations

import io
import sqlite3
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from exporter.chain.session import ChainSession
from exporter.chain.wire import RequestCounter
from exporter.config import ChainConfig, Config, HistoryConfig, ScopeConfig, WatchedHotkey
from exporter.backfill import Backfill, BackfillError, Plan, plan_range, run_backfill
from exporter.history.store import HistoryStore
from simnode import SIMNODE_GENESIS_HASH, ChainState, SimNode
from simnode.actions import add_stake, remove_stake, schedule_children, set_childkey_take
from simnode.epoch import advance_to
from tests import tricky_chain as t
from tests.conftest import write_tricky_chain
from tests.test_history_causes_e2e import garbage_events

SCOPE = ScopeConfig(min_stake_weight=0, watch=(WatchedHotkey(t.M, "M"),))
END = 1500  # about five hours of blocks: four epochs of subnet 1 (tempo 360)
LIVE_EVERY = 50  # blocks between the live exporter's refreshes
COLUMNS = "block, time, kind, hotkey, netuid, parent, child, old_value, new_value, cause, extrinsic, block_from"


def script(state: ChainState, block: int) -> None:
    """The changes due in ``block`` (pending); a few of each kind, some in consecutive blocks."""
    if block in (20, 21, 22):
        set_childkey_take(state, t.C2, 1, 5000 + block)
    if block == 40:
        schedule_children(state, t.P3, 1, [(t.HALF, t.Z)], cooldown=30)
    if block == 400:
        set_childkey_take(state, t.M, 1, 9000)
    if block == 401:
        set_childkey_take(state, t.M, 1, 3000)  # set back
    if block == 700:
        add_stake(state, t.COLD[t.M], t.M, 1, 200 * t.RAO)
    if block == 1100:
        remove_stake(state, t.COLD[t.M], t.M, 1, 150 * t.RAO)
        schedule_children(state, t.P2, 1, [], cooldown=10)


def events_of(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(f"SELECT {COLUMNS} FROM events ORDER BY block, id").fetchall()


@pytest.fixture(scope="module")
def month_like(tmp_path_factory):
    """An archive node stepped through the script, with a live exporter refreshing along the way."""
    from tests.harness import ExporterUnderTest

    state = ChainState(393)
    write_tricky_chain(state)  # block 1
    live_db = tmp_path_factory.mktemp("live") / "history.db"
    with SimNode(state) as node:
        live = ExporterUnderTest(node.url, scope=SCOPE, history_path=str(live_db))
        try:
            assert live.refresh()  # the baseline at block 1
            block = 1
            while block < END:
                script(state, block + 1)
                advance_to(state, block + 1)
                block += 1
                if block % LIVE_EVERY == 0:
                    # An epoch that takes most permits is held back until the next read confirms it.
                    live.refresh() or live.refresh()
            assert live.snapshot.chain.block == END
            yield node, live_db
        finally:
            live.close()


def config_for(db: Path) -> Config:
    return Config(chain=ChainConfig(genesis_hash=SIMNODE_GENESIS_HASH), scope=SCOPE, history=HistoryConfig(path=str(db)),
                  refresh_timeout_seconds=30)


def test_a_backfill_records_what_the_live_exporter_recorded(month_like, tmp_path):
    node, live_db = month_like
    db, out = tmp_path / "backfilled.db", io.StringIO()
    code = run_backfill(config_for(db), archive=node.url, days=None, from_block=1, to_block=END,
                        requests_per_second=10_000, chunk=300, out=out)
    assert code == 0, out.getvalue()
    live, backfilled = events_of(live_db), events_of(db)
    assert len(live) >= 15
    assert backfilled == live
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM events WHERE backfilled = 0").fetchone() == (0,)
    assert "done:" in out.getvalue() and "eta" in out.getvalue()


class _StopAfter(io.StringIO):
    """A progress stream that asks the backfill to stop after ``lines`` progress lines (a kill, in effect:
    what was committed stays, nothing else)."""

    def __init__(self, lines: int, stop: threading.Event):
        super().__init__()
        self.lines, self.stop = lines, stop

    def write(self, text: str) -> int:
        if text.startswith("backfill"):
            self.lines -= 1
            if self.lines <= 0:
                self.stop.set()
        return super().write(text)


def test_an_interrupted_backfill_resumes_to_the_same_events_within_its_request_budget(month_like, tmp_path):
    node, live_db = month_like
    db = tmp_path / "backfilled.db"
    config = replace(config_for(db), chain=ChainConfig(endpoints=(node.url,), genesis_hash=SIMNODE_GENESIS_HASH))
    counter = RequestCounter()
    session = ChainSession(config.chain, counter)
    store = HistoryStore.open(str(db))
    try:
        stop = threading.Event()
        start, end = plan_range(store, head=END, days=None, from_block=1, to_block=END)
        Backfill(session, counter, store, config, Plan(start, end, chunk=300, requests_per_second=10_000),
                 progress=_StopAfter(2, stop), stop=stop).run()
        progress = store.backfill_progress()
        assert progress == {"start": 1, "end": END, "done": 601}  # two chunks committed, then stopped
        # Resumed: the same command plans the rest.
        assert plan_range(store, head=END, days=None, from_block=1, to_block=END) == (601, END)
        budget = 400.0  # requests per second
        before, began = sum(counter.totals().values()), time.monotonic()
        Backfill(session, counter, store, config, Plan(601, END, chunk=300, requests_per_second=budget)).run()
        requests, seconds = sum(counter.totals().values()) - before, time.monotonic() - began
        assert requests / seconds <= budget
        assert store.backfill_progress()["done"] == END
        # Done: nothing more to do before what is there.
        with pytest.raises(BackfillError):
            plan_range(store, head=END, days=None, from_block=1, to_block=END)
    finally:
        store.close()
        session.close()
    assert events_of(db) == events_of(live_db)


def test_without_an_archive_endpoint_it_says_what_to_set(tmp_path):
    out = io.StringIO()
    code = run_backfill(config_for(tmp_path / "h.db"), archive=None, days=1, from_block=None, to_block=None,
                        requests_per_second=10, chunk=300, out=out)
    assert code == 2 and "history.archive_endpoint" in out.getvalue()


def test_the_command_killed_mid_way_resumes_where_it_stopped(month_like, tmp_path):
    """The real ``history backfill`` process, SIGKILLed after its first chunks, then run again."""
    import os
    import signal
    import subprocess
    import sys

    node, live_db = month_like
    db, config = tmp_path / "backfilled.db", tmp_path / "config.yaml"
    # The same watched hotkey as the live exporter: history tracks watched hotkeys wherever they are.
    config.write_text(f"chain:\n  genesis_hash: '{SIMNODE_GENESIS_HASH}'\n"
                      f"scope:\n  min_stake_weight: 0\n  watch:\n    - hotkey: {t.M}\n      alias: M\n")
    command = [sys.executable, "-m", "exporter", "history", "backfill", "--config.file", str(config), "--history.path", str(db),
               "--archive.endpoint", node.url, "--from-block", "1", "--to-block", str(END),
               "--requests-per-second", "150", "--log.level", "error"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for line in process.stderr:  # progress lines, one per chunk
            if line.startswith("backfill [") and "#601" in line:
                process.send_signal(signal.SIGKILL)
                break
    finally:
        process.wait(timeout=60)
    with sqlite3.connect(db) as conn:
        done = conn.execute("SELECT value FROM meta WHERE key = 'backfill'").fetchone()[0]
    assert '"done": 601' in done or '"done": 901' in done  # killed after a committed chunk
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "backfilling blocks 601" in again.stderr or "backfilling blocks 901" in again.stderr
    assert events_of(db) == events_of(live_db)


def test_a_step_whose_events_cannot_be_read_stops_the_backfill_instead_of_recording_a_gap(tmp_path):
    """An archive answering the events with garbage: the step is not recorded (it is read again when
    the backfill is resumed), rather than its changes being written as net changes over a gap."""
    state = ChainState(393)
    write_tricky_chain(state)
    set_childkey_take(state, t.C2, 1, 6000)
    state.advance(400)
    with SimNode(state) as node:
        node.fault = garbage_events
        db, out = tmp_path / "backfilled.db", io.StringIO()
        code = run_backfill(config_for(db), archive=node.url, days=None, from_block=1, to_block=400,
                            requests_per_second=10_000, chunk=300, out=out)
    assert code == 1 and "could not be read" in out.getvalue(), out.getvalue()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (0,)
        assert conn.execute("SELECT value FROM meta WHERE key = 'backfill'").fetchone() is None
