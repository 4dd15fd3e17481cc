"""The refresh pipeline against a fake chain: what each refresh publishes, good or failed."""

from __future__ import annotations

import gzip
import threading
from dataclasses import replace

import pytest

from exporter.chain.read_failure import Attempt, ReadError
from exporter.config import Config, HistoryConfig, ScopeConfig, WatchedHotkey
from exporter.history.store import Retention
from exporter.history.writer import HistoryWriter
from exporter.refresh import Refresher
from exporter.serving.status import STAGES
from tests import tricky_chain as t
from tests.harness import parse_exposition, series
from tests.test_snapshot import chain_read

ENDPOINT = "ws://node.example:9944"
CONFIG = Config(scope=ScopeConfig(min_stake_weight=100), interval_seconds=60)


class FakeChain:
    """Answers each read with the next item: a ChainRead, or an exception to raise."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.reads = 0

    def read(self, scope, timeout, events=None):
        self.reads += 1
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer, (Attempt(ENDPOINT, None, 0.01),)


class FakeRequests:
    def __init__(self):
        self.count = 0

    def totals(self):
        self.count += 5
        return {"state_queryStorageAt": self.count}


class Clock:
    def __init__(self, now=1_767_225_600.0):
        self.now = now

    def __call__(self):
        return self.now


def refresher(chain, clock=None, history=None, config=CONFIG) -> Refresher:
    return Refresher(config, chain, FakeRequests(), (ENDPOINT,), history=history, clock=clock or Clock())


def served(publication, now, gzip_encoding=False) -> dict:
    body = b"".join(publication.body(now, b"", gzip_encoding))
    return parse_exposition((gzip.decompress(body) if gzip_encoding else body).decode())


def test_before_the_first_refresh_only_the_status_is_served():
    r = refresher(FakeChain())
    p = r.current()
    assert p.generation == 0 and p.data is None and not p.is_fresh(0)
    s = served(p, 0)
    assert series(s, "bittensor_exporter_up") == 0
    assert series(s, "bittensor_exporter_validators") == 0


def test_a_good_refresh_publishes_snapshot_and_status_together():
    clock = Clock()
    r = refresher(FakeChain(chain_read()), clock)
    p = r.refresh_once()
    assert r.current() is p and p.up and p.generation == 1
    s = served(p, clock.now)
    validators = {labels for name, labels in s if name == "bittensor_validator_own_stake_alpha"}
    assert series(s, "bittensor_exporter_validators") == len(validators) == len(p.data.snapshot.validators) > 0
    assert series(s, "bittensor_exporter_child_edges") == len(p.data.snapshot.edges)
    assert series(s, "bittensor_exporter_last_refresh_success_timestamp_seconds") == clock.now
    assert series(s, "bittensor_exporter_snapshot_bytes", encoding="identity") == len(p.data.plain)
    assert series(s, "bittensor_exporter_refresh_rpc_requests") == 5
    assert series(s, "bittensor_exporter_endpoint_up", endpoint=ENDPOINT) == 1
    stages = {dict(labels)["stage"] for name, labels in s if name == "bittensor_exporter_refresh_stage_duration_seconds_count"}
    assert stages == {"read", "snapshot", "render"}, "no history stages without a history"
    assert served(p, clock.now, gzip_encoding=True) == s


def test_a_failed_refresh_keeps_the_last_snapshot_and_says_why():
    clock = Clock()
    failure = ReadError("timeout", "no answer", (Attempt(ENDPOINT, "timeout", 30.0),))
    r = refresher(FakeChain(chain_read(), failure), clock)
    good = r.refresh_once()
    clock.now += 60
    bad = r.refresh_once()
    assert not bad.up and bad.data is good.data and bad.generation == 2
    s = served(bad, clock.now)
    assert series(s, "bittensor_exporter_up") == 0
    assert series(s, "bittensor_exporter_refresh_errors_total", reason="timeout") == 1
    assert series(s, "bittensor_exporter_endpoint_errors_total", endpoint=ENDPOINT, reason="timeout") == 1
    assert series(s, "bittensor_exporter_endpoint_up", endpoint=ENDPOINT) == 0
    assert series(s, "bittensor_exporter_last_refresh_success_timestamp_seconds") == clock.now - 60
    assert series(s, "bittensor_validator_own_stake_alpha", hotkey=t.M, netuid=1) == 50


def test_a_bug_in_a_stage_is_an_internal_error_not_a_dead_thread():
    r = refresher(FakeChain(replace(chain_read(), permits=None)))  # build_snapshot will fail on it
    p = r.refresh_once()
    assert not p.up
    assert series(served(p, 0), "bittensor_exporter_refresh_errors_total", reason="internal") == 1


def test_past_max_staleness_the_snapshot_and_its_counts_are_withdrawn_together():
    clock = Clock()
    r = refresher(FakeChain(chain_read()), clock)
    p = r.refresh_once()
    fresh = served(p, clock.now + CONFIG.withdraw_after_seconds)
    assert series(fresh, "bittensor_exporter_validators") > 0
    stale = served(p, clock.now + CONFIG.withdraw_after_seconds + 1)
    assert not [k for k in stale if k[0].startswith("bittensor_validator_")]
    assert series(stale, "bittensor_exporter_validators") == 0
    assert series(stale, "bittensor_exporter_child_edges") == 0
    assert series(stale, "bittensor_exporter_up") == 1, "the last refresh did succeed; it is only old"
    assert not p.is_fresh(clock.now + CONFIG.staleness_limit_seconds + 1)


def test_history_stages_run_and_counters_follow_commits(tmp_path):
    writer = HistoryWriter(str(tmp_path / "h.db"), Retention(), stake_change_ratio=0.05)
    takes = dict(chain_read().takes)
    takes[(t.M, 1)] = 4000
    config = replace(CONFIG, history=HistoryConfig(path=str(tmp_path / "h.db")),
                     scope=replace(CONFIG.scope, watch=(WatchedHotkey(t.M, "M"),)))
    r = refresher(FakeChain(chain_read(), chain_read(block=101, takes=takes)), history=writer, config=config)
    r.refresh_once()
    p = r.refresh_once()
    s = served(p, p.last_success)
    assert series(s, "bittensor_childkey_changes_total", hotkey=t.M, netuid=1, kind="take_changed") == 1
    assert series(s, "bittensor_subnet_changes_total", netuid=1, kind="take_changed") == 1
    assert series(s, "bittensor_exporter_history_writes_total", result="ok") == 2
    stages = {dict(labels)["stage"] for name, labels in s if name == "bittensor_exporter_refresh_stage_duration_seconds_count"}
    assert stages == set(STAGES)
    writer.close()


def test_the_thread_refreshes_on_demand_and_closes_the_history_on_its_own_thread(tmp_path):
    writer = HistoryWriter(str(tmp_path / "h.db"), Retention(), stake_change_ratio=0.05)
    used_on = []
    original = writer.diff

    def diff(snapshot):
        used_on.append(threading.current_thread().name)
        return original(snapshot)

    writer.diff = diff
    r = refresher(FakeChain(chain_read(), chain_read()), history=writer)
    r.start(scheduled=False)
    try:
        assert r.refresh_now(timeout=10).up and r.refresh_now(timeout=10).generation == 2
    finally:
        r.stop(timeout=10)
    assert used_on == ["refresh", "refresh"]
    assert writer._store is None, "closed when the thread stopped"  # noqa: SLF001


def test_history_used_from_another_thread_is_refused(tmp_path):
    writer = HistoryWriter(str(tmp_path / "h.db"), Retention(), stake_change_ratio=0.05)
    r = refresher(FakeChain(chain_read()), history=writer)
    r.refresh_once()  # opened on this thread
    errors = []
    other = threading.Thread(target=lambda: errors.append(pytest.raises(RuntimeError, writer.diff, None)))
    other.start()
    other.join()
    assert errors
    writer.close()


def test_watched_mode_leaves_out_the_network_wide_change_totals(tmp_path):
    writer = HistoryWriter(str(tmp_path / "h.db"), Retention(), stake_change_ratio=0.05, watched=frozenset({t.M}))
    takes = dict(chain_read().takes)
    takes[(t.M, 1)], takes[(t.C2, 1)] = 4000, 100
    scope = replace(CONFIG.scope, watch=(WatchedHotkey(t.M, "M"),), mode="watched")
    config = replace(CONFIG, history=HistoryConfig(path=str(tmp_path / "h.db")), scope=scope)
    r = refresher(FakeChain(chain_read(), chain_read(block=101, takes=takes)), history=writer, config=config)
    r.refresh_once()
    s = served(r.refresh_once(), Clock().now)
    assert series(s, "bittensor_childkey_changes_total", hotkey=t.M, netuid=1, kind="take_changed") == 1
    assert series(s, "bittensor_validator_last_change_block", hotkey=t.M, netuid=1, kind="take_changed") == 101
    assert not [k for k in s if k[0] == "bittensor_subnet_changes_total"]
    writer.close()


def test_a_watched_validators_stake_move_is_served_as_its_last_change_not_counted(tmp_path):
    """Own stake halved: the last change of kind own_stake_moved is served (a dashboard shows it),
    while the per-validator counters keep to the other kinds."""
    writer = HistoryWriter(str(tmp_path / "h.db"), Retention(), stake_change_ratio=0.05, watched=frozenset({t.M}))
    stake = dict(chain_read().stake)
    assert stake[(t.M, 1)] > 0
    stake[(t.M, 1)] //= 2
    scope = replace(CONFIG.scope, watch=(WatchedHotkey(t.M, "M"),))
    config = replace(CONFIG, history=HistoryConfig(path=str(tmp_path / "h.db")), scope=scope)
    r = refresher(FakeChain(chain_read(), chain_read(block=101, stake=stake)), history=writer, config=config)
    r.refresh_once()
    s = served(r.refresh_once(), Clock().now)
    assert series(s, "bittensor_validator_last_change_block", hotkey=t.M, netuid=1, kind="own_stake_moved") == 101
    assert series(s, "bittensor_validator_last_change_timestamp_seconds", hotkey=t.M, netuid=1, kind="own_stake_moved") == 1_767_225_600  # the block time read
    assert not [k for k in s if k[0] == "bittensor_childkey_changes_total" and ("kind", "own_stake_moved") in k[1]]
    writer.close()


def test_an_unreachable_endpoint_before_any_success_says_what_to_check():
    from structlog.testing import capture_logs

    unreachable = ReadError("connection", "[Errno -2] Name or service not known", (Attempt(ENDPOINT, "connection", 0.1),))
    r = refresher(FakeChain(unreachable, chain_read(), unreachable))
    with capture_logs() as logs:
        r.refresh_once()
        r.refresh_once()
        r.refresh_once()
    failed = [e for e in logs if e["event"] == "refresh failed"]
    assert len(failed) == 2 and failed[0]["log_level"] == "warning"
    assert "chain.endpoints" in failed[0]["hint"] and "make demo" in failed[0]["hint"]
    assert "hint" not in failed[1], "once the chain was read, a failure is an outage, not a setup problem"


def test_a_read_cut_short_by_a_stop_is_not_a_failed_refresh():
    from structlog.testing import capture_logs

    r = refresher(FakeChain(ReadError("timeout", "read cancelled: the exporter is stopping")))
    r.stopping()
    with capture_logs() as logs:
        p = r.refresh_once()
    assert not p.up
    assert [(e["event"], e["log_level"]) for e in logs] == [("refresh interrupted: the exporter is stopping", "info")]
