"""Fault injection against the simulated node: the exporter never crashes, never exports a
wrong value, reports up 0 while failing, recovers at the next refresh, and loses no history."""

from __future__ import annotations

import sqlite3

import pytest

from exporter.config import ScopeConfig
from exporter.chain.endpoints import EndpointPool
from tests import tricky_chain as t
from tests.conftest import write_tricky_chain
from tests.harness import parents_of, series
from simnode import ChainState, SimNode

SCOPE = ScopeConfig(min_stake_weight=100)
FAST = dict(chain_timeout=1, refresh_timeout_seconds=6)


class Once:
    """A fault that hits the n-th call of one method, once."""

    def __init__(self, method: str, action: tuple, nth: int = 1):
        self.method, self.action, self.nth, self.seen = method, action, nth, 0

    def __call__(self, method, params):
        if method != self.method:
            return None
        self.seen += 1
        return self.action if self.seen == self.nth else None


def always(method_name: str, action: tuple):
    return lambda method, params: action if method == method_name else None


@pytest.fixture
def watch(tricky_node, exporter_factory, tmp_path):
    """Start an exporter with history (FAST, or what the test overrides) that has read the tricky chain once."""

    def start(**overrides):
        exporter = exporter_factory(tricky_node, scope=SCOPE, history_path=str(tmp_path / "h.db"), **{**FAST, **overrides})
        assert exporter.refresh()
        return tricky_node, exporter, tmp_path / "h.db"

    return start


@pytest.fixture
def watched(watch):
    return watch()


def assert_last_good_values_served(exporter, up: int):
    s = exporter.scrape()
    assert series(s, "bittensor_exporter_up") == up
    # exactly the hand-computed numbers of the last good read, never a partial or garbled one
    assert series(s, "bittensor_validator_inherited_stake_alpha", hotkey=t.M, netuid=1) == t.EXPECTED[t.M]["inherited"] / 1e9
    assert series(s, "bittensor_validator_inherited_stake_alpha", hotkey=t.Z, netuid=1) == t.EXPECTED[t.Z]["inherited"] / 1e9
    assert parents_of(s, t.M, 1) == 2
    return s


def change_and_recover(node, exporter, db):
    """Heal, make one change, and check the next refresh publishes it and records it."""
    node.fault = None
    node.state.set("ChildkeyTake", [t.C5, 1], 777)
    node.state.commit_block()
    assert exporter.refresh(), "recovers at the first refresh after the node is healthy"
    s = exporter.scrape()
    assert series(s, "bittensor_exporter_up") == 1
    assert series(s, "bittensor_validator_childkey_take_ratio", hotkey=t.C5, netuid=1) == pytest.approx(777 / 65535)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        kinds = [k for (k,) in conn.execute("SELECT kind FROM events WHERE hotkey = ?", (t.C5,))]
    assert kinds == ["take_changed"]


def test_connection_dropped_in_the_middle_of_a_paged_read(watched):
    node, exporter, db = watched
    node.state.commit_block()
    node.fault = Once("state_getKeysPaged", ("drop",), nth=3)
    assert exporter.refresh(), "the SDK reconnects and resubmits; the read stays pinned to its block"
    assert node.fault.seen >= 3
    assert_last_good_values_served(exporter, up=1)
    change_and_recover(node, exporter, db)


def test_stalled_response_times_out(watch):
    # The SDK gives up after _SDK_RETRIES response timeouts (and a 0.25 s backoff
    # between them): a shorter one makes that ~1.3 s instead of ~2.3 s.
    node, exporter, db = watch(chain_timeout=0.5)
    node.fault = always("state_queryStorageAt", ("delay", 30))
    assert not exporter.refresh()
    s = assert_last_good_values_served(exporter, up=0)
    assert series(s, "bittensor_exporter_refresh_errors_total", reason="timeout") + series(
        s, "bittensor_exporter_refresh_errors_total", reason="connection") >= 1
    change_and_recover(node, exporter, db)


def test_malformed_json(watch):
    # Every frame the SDK receives, unparseable or not, resets its count of response
    # timeouts, so it reconnects and resubmits until the refresh's deadline: that
    # deadline is what this test waits for. 1.5 s leaves room for two reconnects.
    node, exporter, db = watch(chain_timeout=0.5, refresh_timeout_seconds=1.5)
    node.fault = always("chain_getFinalizedHead", ("raw", "{this is not json"))
    assert not exporter.refresh()
    assert_last_good_values_served(exporter, up=0)
    change_and_recover(node, exporter, db)


def test_json_rpc_errors(watched):
    node, exporter, db = watched
    node.fault = always("state_queryStorageAt", ("error", -32000, "Client error: too busy"))
    assert not exporter.refresh()
    s = assert_last_good_values_served(exporter, up=0)
    assert series(s, "bittensor_exporter_refresh_errors_total", reason="rpc_error") == 1
    change_and_recover(node, exporter, db)


@pytest.mark.parametrize("item, params, raw", [
    ("ChildKeys", [t.P3, 1], bytes.fromhex("04ffffffff")),  # a Vec that promises one entry and ends mid-way
    ("TotalHotkeyAlpha", [t.M, 1], bytes.fromhex("0102")),  # a u64 of two bytes
    ("ParentKeys", [t.M, 1], bytes.fromhex("08") + b"\x01" * 10),  # wrongly typed: not (u64, AccountId) pairs
])
def test_truncated_or_wrongly_typed_scale_value(watched, item, params, raw):
    node, exporter, db = watched
    good = node.state.get_raw(item, params)
    node.state.set_raw(node.state.key(item, params), raw)
    node.state.commit_block()
    assert not exporter.refresh(), "a value that does not decode fails the whole refresh"
    s = assert_last_good_values_served(exporter, up=0)
    assert series(s, "bittensor_exporter_refresh_errors_total", reason="decode") == 1
    assert series(s, "bittensor_chain_block") == 1, "nothing of the bad block is published"
    node.state.set_raw(node.state.key(item, params), good)
    change_and_recover(node, exporter, db)


def test_node_restart(watched):
    node, exporter, db = watched
    node.stop()
    assert not exporter.refresh()
    assert_last_good_values_served(exporter, up=0)
    node.start()
    change_and_recover(node, exporter, db)


def test_very_large_response(watch):
    # Moving 40 MB through both ends of the websocket in one process takes ~2 s of
    # CPU; with a 1 s response timeout a busy machine saw timeouts, reconnects and
    # a second transfer (7 s). A timeout that doesn't race the transfer keeps it to one.
    node, exporter, db = watch(chain_timeout=10, refresh_timeout_seconds=30)
    node.fault = always("chain_getFinalizedHead", ("result", "0x" + "ab" * 20_000_000))  # a 40 MB "hash"
    assert not exporter.refresh()
    assert_last_good_values_served(exporter, up=0)
    change_and_recover(node, exporter, db)


def test_failover_to_the_next_endpoint_and_back(exporter_factory):
    state = ChainState()
    write_tricky_chain(state)
    now = [1000.0]
    pool_clock = lambda: now[0]  # noqa: E731
    with SimNode(state) as primary, SimNode(state) as secondary:
        pool = EndpointPool((primary.url, secondary.url), clock=pool_clock, jitter=lambda: 1.0, base=60)
        exporter = exporter_factory([primary.url, secondary.url], scope=SCOPE, pool=pool, **FAST)
        primary.fault = always("chain_getFinalizedHead", ("error", -32000, "node is syncing"))
        assert exporter.refresh()
        s = exporter.scrape()
        labels = [e.label for e in pool.endpoints]
        assert series(s, "bittensor_exporter_endpoint_up", endpoint=labels[0]) == 0
        assert series(s, "bittensor_exporter_endpoint_errors_total", endpoint=labels[0], reason="rpc_error") == 1
        assert series(s, "bittensor_exporter_endpoint_up", endpoint=labels[1]) == 1
        assert series(s, "bittensor_validator_inherited_stake_alpha", hotkey=t.M, netuid=1) == t.EXPECTED[t.M]["inherited"] / 1e9
        primary.fault = None
        primary.reset_counters()
        assert exporter.refresh()
        assert sum(primary.requests.values()) == 0, "the failed endpoint backs off"
        now[0] += 61
        assert exporter.refresh()
        assert sum(primary.requests.values()) > 0, "after its backoff the preferred endpoint is used again"
        assert series(exporter.scrape(), "bittensor_exporter_endpoint_up", endpoint=labels[0]) == 1


def test_runtime_upgrade_is_picked_up_without_restart(exporter_factory):
    state = ChainState(spec_version=365)
    write_tricky_chain(state)
    with SimNode(state) as node:
        exporter = exporter_factory(node, scope=SCOPE)
        assert exporter.refresh()
        assert series(exporter.scrape(), "bittensor_chain_runtime_spec_version") == 365
        state.set_spec_version(393)
        state.commit_block()  # the upgrade block, still governed by 365
        state.commit_block()  # the first block of the new runtime
        assert exporter.refresh()
        s = exporter.scrape()
        assert series(s, "bittensor_chain_runtime_spec_version") == 393
        assert series(s, "bittensor_validator_inherited_stake_alpha", hotkey=t.M, netuid=1) == t.EXPECTED[t.M]["inherited"] / 1e9
        assert node.requests["state_call"] >= 2, "both runtimes' metadata were downloaded"


def test_series_withdrawn_after_max_staleness(tricky_node, exporter_factory):
    now = [1_800_000_000.0]
    exporter = exporter_factory(tricky_node, scope=SCOPE, clock=lambda: now[0], interval_seconds=60, **FAST)
    assert exporter.refresh()
    tricky_node.stop()
    assert not exporter.refresh()
    now[0] += 15 * 60  # at the limit: still served
    assert series(exporter.scrape(), "bittensor_validator_own_stake_alpha", hotkey=t.M, netuid=1) == 50
    now[0] += 1
    s = exporter.scrape()
    assert series(s, "bittensor_validator_own_stake_alpha", hotkey=t.M, netuid=1) is None
    assert series(s, "bittensor_exporter_up") == 0
    assert series(s, "bittensor_exporter_last_refresh_success_timestamp_seconds") == 1_800_000_000.0
