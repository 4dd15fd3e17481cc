"""A history file is one chain's: bound to the configured genesis hash at its first open, it is
never written with another chain's reads (every difference from the other chain's state would be
recorded as a change), whether the exporter starts on it, meets it at run time, or a backfill
would write into it."""

from __future__ import annotations

import io
import sqlite3

import structlog

from exporter.cli import main
from exporter.config_load import load_config
from exporter.backfill import run_backfill
from exporter.history.store import HistoryStore, Retention
from exporter.history.writer import HistoryWriter, history_path_problem
from exporter.snapshot.builder import build_snapshot
from tests import tricky_chain as t
from tests.test_history_store import SCOPE
from tests.test_snapshot import chain_read

CHAIN_A = "0x" + "aa" * 32
CHAIN_B = "0x" + "BB" * 32  # upper case: hashes compare without case


def writer(path, genesis) -> HistoryWriter:
    return HistoryWriter(str(path), Retention(sample_all=True), stake_change_ratio=0.05, genesis_hash=genesis)


def recorded_genesis(path) -> str:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT value FROM meta WHERE key = 'genesis_hash'").fetchone()[0]


def events(path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]


def test_the_first_writer_binds_the_file_and_another_chains_writer_writes_nothing(tmp_path):
    path = tmp_path / "h.db"
    first = writer(path, CHAIN_A)
    assert first.record(build_snapshot(chain_read(block=100), SCOPE)).ok
    first.close()
    assert recorded_genesis(path) == CHAIN_A

    stake = dict(chain_read().stake)
    stake[(t.M, 1)] *= 3  # the other chain differs: each difference would be a false change
    other = writer(path, CHAIN_B)
    with structlog.testing.capture_logs() as logs:
        assert not other.record(build_snapshot(chain_read(block=200, stake=stake), SCOPE)).ok
    other.close()
    (failed,) = [e for e in logs if e["event"].startswith("history write failed")]
    assert failed["error_type"] == "HistoryOfAnotherChain" and failed.get("exc_info") is None
    assert "holds the history of another chain (genesis hash 0xaaaa" in failed["error"]
    assert events(path) == 0 and recorded_genesis(path) == CHAIN_A
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'last_block'").fetchone()[0] == "100"

    again = writer(path, CHAIN_A.upper().replace("0X", "0x"))  # the same chain, however it is spelled
    assert again.record(build_snapshot(chain_read(block=101), SCOPE)).ok
    again.close()


def test_a_file_from_before_the_binding_is_claimed_by_its_next_writer(tmp_path):
    path = tmp_path / "h.db"
    unbound = writer(path, None)
    assert unbound.record(build_snapshot(chain_read(block=100), SCOPE)).ok
    unbound.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM meta WHERE key = 'genesis_hash'").fetchone()[0] == 0
    claimed = writer(path, CHAIN_B)
    assert claimed.record(build_snapshot(chain_read(block=101), SCOPE)).ok
    claimed.close()
    assert recorded_genesis(path) == CHAIN_B.lower()


def test_a_reset_file_can_be_bound_again(tmp_path):
    path = tmp_path / "h.db"
    first = writer(path, CHAIN_A)
    assert first.record(build_snapshot(chain_read(block=100), SCOPE)).ok
    first.close()
    store = HistoryStore.open(str(path))
    store.reset()
    store.close()
    second = writer(path, CHAIN_B)
    assert second.record(build_snapshot(chain_read(block=5), SCOPE)).ok
    second.close()
    assert recorded_genesis(path) == CHAIN_B.lower()


def test_the_exporter_refuses_to_start_on_another_chains_history(tmp_path, capsys):
    path = tmp_path / "h.db"
    first = writer(path, CHAIN_A)
    assert first.record(build_snapshot(chain_read(block=100), SCOPE)).ok
    first.close()
    assert history_path_problem(str(path), CHAIN_A) is None
    assert history_path_problem(str(path)) is None  # no chain named: nothing to compare
    config = tmp_path / "c.yaml"
    config.write_text(f'chain:\n  genesis_hash: "{CHAIN_B}"\nhistory:\n  path: "{path}"\n')
    assert main(["--config.file", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") <= 2 and "Traceback" not in err
    assert f"holds the history of another chain (genesis hash {CHAIN_A}), not of chain.genesis_hash " \
           f"{CHAIN_B.lower()}" in err and "--history.path" in err

    out = io.StringIO()
    assert run_backfill(load_config(str(config)), archive="ws://127.0.0.1:9", days=1, from_block=None, to_block=None,
                        requests_per_second=1, chunk=300, out=out) == 2
    assert "holds the history of another chain" in out.getvalue()
    assert events(path) == 0 and recorded_genesis(path) == CHAIN_A
