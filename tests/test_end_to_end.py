"""The real SDK reads the simulated node over the wire; /metrics must show the chain's numbers."""

from __future__ import annotations

import pytest

from exporter.config import ScopeConfig, WatchedHotkey
from tests import tricky_chain as t
from tests.harness import names, parents_of, series, validator_values

SCOPE = ScopeConfig(min_stake_weight=100, watch=(WatchedHotkey(t.P, "parent", expected_take=0.09),))
RAO = 1e9


def test_every_validator_matches_hand_computed_values(tricky_node, exporter_factory):
    exporter = exporter_factory(tricky_node, scope=SCOPE)
    assert exporter.refresh()
    samples = exporter.scrape()
    in_scope = {(d["hotkey"], d["netuid"]) for d in names(samples, "bittensor_validator_own_stake_alpha")}
    assert in_scope == {(h, "1") for h in t.IN_SCOPE_1} | {(t.V2, "2")}
    for who in [*t.CHILDREN, t.P, t.M, t.Z, t.P2]:
        want = t.EXPECTED.get(who, t.EXPECTED["child"])

        got = validator_values(samples, who, 1)
        assert got["own"] == want["own"] / RAO
        assert got["root"] == want["root"] / RAO
        assert got["inherited"] == want["inherited"] / RAO
        assert got["inherited_root"] == want["inherited_root"] / RAO
        assert got["to_children"] == pytest.approx(want["to_children"] / RAO, rel=1e-15)
        assert got["from_parents"] == pytest.approx(want["from_parents"] / RAO, rel=1e-15)
        assert got["stake_weight"] == pytest.approx(want["stake_weight"] / RAO, rel=1e-15)
        assert (got["parents"], got["children"]) == (want["parents"], want["children"])

        def value(metric):
            return series(samples, metric, hotkey=who, netuid=1)

        assert series(samples, "bittensor_validator_permit", hotkey=who, netuid=1, uid=t.UIDS_1.index(who)) == 1


def test_takes_edges_pending_and_chain_metrics(tricky_node, exporter_factory):
    exporter = exporter_factory(tricky_node, scope=SCOPE)
    assert exporter.refresh()
    s = exporter.scrape()
    assert series(s, "bittensor_validator_childkey_take_ratio", hotkey=t.C1, netuid=1) == 0
    assert series(s, "bittensor_validator_childkey_take_ratio", hotkey=t.C2, netuid=1) == pytest.approx(t.TAKE_MAX_RATIO)
    assert series(s, "bittensor_validator_expected_childkey_take_ratio", hotkey=t.P, netuid=1) == 0.09
    assert series(s, "bittensor_validator_info", hotkey=t.P, coldkey=t.COLD[t.P], alias="parent", watched="true") == 1
    assert series(s, "bittensor_validator_info", hotkey=t.M, coldkey=t.COLD[t.M], alias="", watched="false") == 1
    assert series(s, "bittensor_childkey_proportion_ratio", parent_hotkey=t.NP, child_hotkey=t.Z, netuid=1) == pytest.approx(0.25)
    assert series(s, "bittensor_childkey_proportion_ratio", parent_hotkey=t.P3, child_hotkey=t.M, netuid=1) == 1.0
    assert series(s, "bittensor_childkey_pending_children", parent_hotkey=t.P2, netuid=1) == 1
    assert series(s, "bittensor_childkey_pending_cooldown_block", parent_hotkey=t.P2, netuid=1) == 7300
    assert series(s, "bittensor_childkey_pending_children", parent_hotkey=t.P, netuid=1) == 0
    assert series(s, "bittensor_chain_block") == 1
    assert series(s, "bittensor_chain_tao_weight_ratio") == pytest.approx(0.2)
    assert series(s, "bittensor_chain_stake_threshold_alpha") == 1000
    assert series(s, "bittensor_chain_runtime_spec_version") == 393
    assert series(s, "bittensor_exporter_up") == 1
    assert series(s, "bittensor_exporter_refresh_errors_total", reason="timeout") == 0


def test_reads_are_pinned_to_the_finalized_block(tricky_node, exporter_factory):
    state = tricky_node.state
    state.finalized_lag = 1
    state.set("TotalHotkeyAlpha", [t.M, 1], 999 * 10**9)
    state.commit_block()  # head moves on; finalized stays at block 1
    exporter = exporter_factory(tricky_node, scope=SCOPE)
    assert exporter.refresh()
    s = exporter.scrape()
    assert series(s, "bittensor_chain_block") == 1
    assert series(s, "bittensor_validator_own_stake_alpha", hotkey=t.M, netuid=1) == 50


def test_a_key_that_leaves_the_chain_leaves_metrics(tricky_node, exporter_factory):
    exporter = exporter_factory(tricky_node, scope=SCOPE)
    assert exporter.refresh()
    assert series(exporter.scrape(), "bittensor_childkey_proportion_ratio", parent_hotkey=t.P3, child_hotkey=t.M, netuid=1) == 1.0
    state = tricky_node.state
    state.set("ChildKeys", [t.P3, 1], [])
    state.delete("ChildKeys", [t.P3, 1])
    state.set("ParentKeys", [t.M, 1], [(t.HALF, t.P2)])
    state.delete("PendingChildKeys", [1, t.P2])
    state.commit_block()
    assert exporter.refresh()
    s = exporter.scrape()
    assert series(s, "bittensor_childkey_proportion_ratio", parent_hotkey=t.P3, child_hotkey=t.M, netuid=1) is None
    assert series(s, "bittensor_childkey_pending_children", parent_hotkey=t.P2, netuid=1) is None
    assert parents_of(s, t.M, 1) == 1
    assert series(s, "bittensor_chain_block") == 2


def test_failed_refresh_keeps_last_snapshot_and_sets_up_to_zero(tricky_node, exporter_factory):
    exporter = exporter_factory(tricky_node, scope=SCOPE)
    assert exporter.refresh()
    tricky_node.fault = lambda method, params: ("error", -32000, "node is syncing") if method == "chain_getFinalizedHead" else None
    assert not exporter.refresh()
    s = exporter.scrape()
    assert series(s, "bittensor_exporter_up") == 0
    assert series(s, "bittensor_exporter_refresh_errors_total", reason="rpc_error") == 1
    assert series(s, "bittensor_validator_own_stake_alpha", hotkey=t.M, netuid=1) == 50, "last good snapshot still served"
    tricky_node.fault = None
    assert exporter.refresh()
    assert series(exporter.scrape(), "bittensor_exporter_up") == 1


def test_node_unreachable_is_a_connection_error(tricky_node, exporter_factory):
    exporter = exporter_factory(tricky_node, scope=SCOPE)
    tricky_node.stop()
    assert not exporter.refresh()
    s = exporter.scrape()
    assert series(s, "bittensor_exporter_up") == 0
    assert sum(series(s, "bittensor_exporter_refresh_errors_total", reason=r) for r in ("connection", "timeout")) == 1
    assert names(s, "bittensor_validator_own_stake_alpha") == []


def test_one_refresh_costs_a_handful_of_bulk_requests(tricky_node, exporter_factory):
    exporter = exporter_factory(tricky_node, scope=SCOPE)
    assert exporter.refresh()  # the first refresh also downloads metadata
    tricky_node.reset_counters()
    tricky_node.state.commit_block()
    assert exporter.refresh()
    sent = sum(tricky_node.requests.values())
    assert sent <= 30 + 12, tricky_node.requests  # + the activity and earnings reads (chain/activity.py)
    assert tricky_node.requests["state_getStorageAt"] == 0, "no per-key reads"
    s = exporter.scrape()
    assert series(s, "bittensor_exporter_refresh_rpc_requests") == sent
    assert sum(v for (n, _), v in s.items() if n == "bittensor_exporter_rpc_requests_total") >= sent
