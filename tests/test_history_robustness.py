"""History never blocks metrics: any exception in a history commit is logged once, counted as
a failed write, leaves the recorded state where it was (the next refresh retries), and the
refresh still publishes. Values beyond SQLite's 64-bit integers are stored, not raised."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import pytest
import structlog

from exporter.config import HistoryConfig
from exporter.history.store import HistoryStore, Retention, storable_int
from exporter.history.writer import HistoryWriter
from exporter.snapshot.builder import build_snapshot
from tests import tricky_chain as t
from tests.test_history_store import SCOPE
from tests.test_refresh import CONFIG, Clock, FakeChain, refresher, served
from tests.harness import series
from tests.test_snapshot import chain_read

U64_MAX = 2**64 - 1


def writer_at(path) -> HistoryWriter:
    return HistoryWriter(str(path), Retention(sample_all=True), stake_change_ratio=0.05)


def failing_once(writer: HistoryWriter, error: BaseException) -> None:
    """Make the next commit raise ``error`` inside the store, once."""
    writer.diff(build_snapshot(chain_read(), SCOPE))  # opens the store
    store = writer._store  # noqa: SLF001
    original = store.commit_refresh

    def commit_refresh(*args, **kwargs):
        store.commit_refresh = original
        raise error

    store.commit_refresh = commit_refresh


@pytest.mark.parametrize("error", [OverflowError("Python int too large to convert to SQLite INTEGER"),
                                   ValueError("a bug"), MemoryError()])
def test_any_exception_in_a_commit_fails_the_write_not_the_refresh(tmp_path, error):
    writer = writer_at(tmp_path / "h.db")
    takes = dict(chain_read().takes)
    takes[(t.M, 1)] = 4000
    first, changed = chain_read(), chain_read(block=101, takes=takes)
    clock = Clock()
    config = replace(CONFIG, history=HistoryConfig(path=str(tmp_path / "h.db")))
    r = refresher(FakeChain(first, changed, changed), history=writer, config=config, clock=clock)
    assert r.refresh_once().up
    failing_once(writer, error)
    with structlog.testing.capture_logs() as logs:
        p = r.refresh_once()
    assert p.up, "the refresh publishes although its history write failed"
    s = served(p, clock.now)
    assert series(s, "bittensor_exporter_history_writes_total", result="error") == 1
    assert series(s, "bittensor_validator_childkey_take_ratio", hotkey=t.M, netuid=1) == pytest.approx(4000 / 65535)
    failures = [e for e in logs if e["event"].startswith("history write failed")]
    assert len(failures) == 1 and failures[0]["error_type"] == type(error).__name__
    assert not [e for e in logs if e["log_level"] in ("error", "critical") and e not in failures]
    # The state did not advance: the next refresh finds the same change and records it.
    p = r.refresh_once()
    s = served(p, clock.now)
    assert series(s, "bittensor_exporter_history_writes_total", result="ok") == 2
    assert series(s, "bittensor_subnet_changes_total", netuid=1, kind="take_changed") == 1
    with sqlite3.connect(tmp_path / "h.db") as conn:
        assert conn.execute("SELECT count(*) FROM events WHERE kind = 'take_changed'").fetchone()[0] == 1
    writer.close()


def test_an_unexpected_error_carries_its_traceback_once_until_history_works_again(tmp_path):
    writer = writer_at(tmp_path / "h.db")
    snapshot = build_snapshot(chain_read(), SCOPE)
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            failing_once(writer, ValueError("a bug"))
            assert not writer.record(snapshot).ok
        assert writer.record(snapshot).ok
        failing_once(writer, ValueError("a bug"))
        assert not writer.record(snapshot).ok
    failures = [e for e in logs if e["event"].startswith("history write failed")]
    assert [e.get("exc_info") is not None for e in failures] == [True, False, False, True]
    writer.close()


def test_stakes_beyond_64_bits_are_stored(tmp_path):
    stake = dict(chain_read().stake)
    stake[(t.M, 1)] = U64_MAX  # TotalHotkeyAlpha is a u64
    stake[(t.P, 0)] = 2**63
    snapshot = build_snapshot(chain_read(stake=stake, pending_cooldown=U64_MAX), SCOPE)
    big = next(v for v in snapshot.validators if (v.hotkey, v.netuid) == (t.M, 1))
    assert big.own_alpha == U64_MAX and big.inherited_alpha >= 2**63
    writer = writer_at(tmp_path / "h.db")
    assert writer.record(snapshot).ok
    assert writer.record(replace(snapshot, chain=replace(snapshot.chain, block=101))).ok
    writer.close()
    with sqlite3.connect(tmp_path / "h.db") as conn:
        own, = conn.execute("SELECT own_alpha FROM validator_state WHERE hotkey = ? AND netuid = 1", (t.M,)).fetchone()
        sampled, = conn.execute("SELECT max(inherited_alpha) FROM samples").fetchone()
    assert own == pytest.approx(U64_MAX) and sampled >= 2**63
    store = HistoryStore.open(str(tmp_path / "h.db"))
    try:
        assert store.load_state().validators[(t.M, 1)].own_alpha == pytest.approx(U64_MAX)
    finally:
        store.close()


@pytest.mark.parametrize("value, stored", [
    (0, 0), (2**63 - 1, 2**63 - 1), (-(2**63), -(2**63)),
    (2**63, float(2**63)), (U64_MAX, float(U64_MAX)), (-(2**63) - 1, float(-(2**63) - 1)),
    (10**400, float("inf")), (-(10**400), float("-inf")),
], ids=lambda v: str(v) if not isinstance(v, int) or abs(v) < 10**30 else f"{'-' if v < 0 else ''}10**{len(str(abs(v))) - 1}")
def test_storable_int(value, stored, tmp_path):
    assert storable_int(value) == stored and type(storable_int(value)) is type(stored)
    with sqlite3.connect(":memory:") as conn:
        conn.execute("CREATE TABLE t (x INTEGER NOT NULL)")
        conn.execute("INSERT INTO t VALUES (?)", (storable_int(value),))


def test_a_snapshot_behind_the_recorded_block_records_nothing(tmp_path):
    """Whoever calls: changes are never recorded backwards (the state at 100 is not a change at 99)."""
    path = tmp_path / "h.db"
    writer = writer_at(path)
    at_100 = build_snapshot(chain_read(block=100), SCOPE)
    assert writer.record(at_100).ok
    stake = dict(chain_read().stake)
    stake[(t.M, 1)] = stake[(t.M, 1)] * 3
    at_99 = build_snapshot(chain_read(block=99, stake=stake), SCOPE)
    with structlog.testing.capture_logs() as logs:
        assert not writer.record(at_99).ok
    (failed,) = [e for e in logs if e["event"].startswith("history write failed")]
    assert "behind block 100" in failed["error"] and failed.get("exc_info") is None
    writer.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 0
        assert conn.execute("SELECT value FROM meta WHERE key = 'last_block'").fetchone()[0] == "100"
