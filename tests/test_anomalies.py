"""States real storage holds that no write path makes, on literal reads: each is flagged by rule and
subnet, and the snapshot computes from it what the chain computes (hand-computed expectations)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from structlog.testing import capture_logs

from exporter.config import ScopeConfig, WatchedHotkey
from exporter.serving.exposition import render_snapshot
from exporter.snapshot.anomalies import RULES, find_anomalies
from exporter.snapshot.builder import build_snapshot
from exporter.snapshot.changes import HistoryState, state_of
from exporter.snapshot.model import Anomaly
from exporter.snapshot.read_rules import check_read
from exporter.snapshot.snapshot_check import check_snapshot
from tests import tricky_chain as t
from tests.harness import parse_exposition, series
from tests.test_refresh import FakeChain, refresher
from tests.test_snapshot import chain_read
from tests.test_validate import HASH, mirrored

SCOPE = ScopeConfig(min_stake_weight=100, watch=(WatchedHotkey(t.P, "parent"),))
Q_HALF = 2147483647  # floor(2**32 * HALF / MAX): the chain's U96F32 share of a half
W = 858993459  # TaoWeight MAX // 5 as U96F32 bits


def flagged(read) -> dict:
    return {(a.rule, a.netuid): a.count for a in find_anomalies(read)}


def by_key(snapshot):
    return {(v.hotkey, v.netuid): v for v in snapshot.tracked}


def test_the_tricky_chain_has_no_anomaly():
    assert find_anomalies(chain_read()) == ()


def test_each_rule_counts_its_entries_by_subnet():
    parents = {**mirrored(t.CHILD_KEYS),
               (t.M, 1): ((t.HALF, t.P2),),  # P3 -> M missing: 1 edge
               (t.V2, 2): ((t.HALF, t.P), (t.HALF, t.P))}  # P -> V2 not in ChildKeys, and P listed twice
    read = chain_read(
        max_take=5000, min_take=6000, min_take_per_subnet={1: 4000, 2: 7000},
        parents=parents,
        pending={(1, t.P2): (((t.HALF, t.M), (t.QUARTER, t.P2)), 7300), (1, t.P): (((1, t.C1), (2, t.C1)), 7400)},
        hotkeys={**{k: h for k, h in chain_read().hotkeys.items() if k != (1, 3)}, (2, 1): t.V2},
    )
    check_read(replace(read, block_hash=HASH))
    assert flagged(read) == {
        ("take_above_max", 1): 1,  # C2 at 11796; C3 at 5000 is not above, M at 3000 below
        ("min_take_above_max", None): 1,
        ("min_take_above_max", 2): 1,
        ("parents_do_not_mirror_children", 1): 1,
        ("parents_do_not_mirror_children", 2): 1,
        ("duplicate_parent", 2): 1,
        ("pending_self_or_duplicate", 1): 2,
        ("permit_without_hotkey", 1): 1,
        ("duplicate_hotkey", 2): 2,  # both uids holding V2
    }
    assert [a.rule for a in find_anomalies(read)] == sorted((a.rule for a in find_anomalies(read)), key=RULES.index)


def test_a_take_above_a_lowered_max_is_applied_whole_and_both_takes_are_exported():
    read = chain_read(max_take=5000, min_take=4000)
    snapshot = build_snapshot(read, SCOPE)
    check_snapshot(snapshot)
    v = by_key(snapshot)
    assert v[(t.C2, 1)].childkey_take == 11796 / 65535, "never capped at MaxChildkeyTake"
    assert v[(t.C1, 1)].childkey_take == 4000 / 65535 and v[(t.C1, 1)].stored_childkey_take == 0
    assert v[(t.M, 1)].childkey_take == 4000 / 65535 and v[(t.M, 1)].stored_childkey_take == 3000 / 65535
    samples = parse_exposition(render_snapshot(snapshot).decode())
    assert series(samples, "bittensor_validator_childkey_take_ratio", hotkey=t.C2, netuid=1) == 11796 / 65535
    assert series(samples, "bittensor_validator_stored_childkey_take_ratio", hotkey=t.M, netuid=1) == 3000 / 65535
    assert series(samples, "bittensor_chain_anomalous_entries", rule="take_above_max", netuid=1) == 1


def test_a_per_subnet_minimum_above_the_max_raises_the_take():
    snapshot = build_snapshot(chain_read(min_take_per_subnet={1: 12_000}), SCOPE)
    assert by_key(snapshot)[(t.C2, 1)].childkey_take == 12_000 / 65535
    samples = parse_exposition(render_snapshot(snapshot).decode())
    assert series(samples, "bittensor_chain_anomalous_entries", rule="min_take_above_max", netuid=1) == 1
    chain_wide = parse_exposition(render_snapshot(build_snapshot(chain_read(min_take=12_000), SCOPE)).decode())
    assert series(chain_wide, "bittensor_chain_anomalous_entries", rule="min_take_above_max", netuid="") == 1


def test_parent_keys_without_their_child_keys_mirror_are_read_each_on_its_own():
    # P3 -> M gone from ParentKeys (as after a swap's lost assignment), P -> V2 only in ParentKeys.
    parents = {**mirrored(t.CHILD_KEYS), (t.M, 1): ((t.HALF, t.P2),), (t.V2, 2): ((t.HALF, t.P),)}
    snapshot = build_snapshot(chain_read(parents=parents), ScopeConfig(min_stake_weight=0))
    check_snapshot(snapshot)
    v = by_key(snapshot)
    # M receives from P2 only: 300e9 * Q_HALF / 2**32 = 149_999_999_930.15..., nothing of P3's alpha or root
    m = v[(t.M, 1)]
    assert m.from_parents_alpha == 300 * t.RAO * Q_HALF / 2**32
    assert m.inherited_alpha == 50 * t.RAO + 149_999_999_930 and m.inherited_root_tao == 0 and m.parents == 1
    # P3 still gives all its stake (ChildKeys): its inherited alpha and root are 0
    p3 = v[(t.P3, 1)]
    assert p3.to_children_alpha == 500 * t.RAO and p3.inherited_alpha == 0 and p3.inherited_root_tao == 0
    # V2 receives half of P's root through netuid 2: floor(2000e9 * Q_HALF / 2**32) = 999_999_999_534
    v2 = v[(t.V2, 2)]
    assert v2.inherited_root_tao == 10 * t.RAO + 999_999_999_534 and v2.inherited_alpha == 5000 * t.RAO
    assert v2.stake_weight == ((5000 * t.RAO << 64) + (10 * t.RAO + 999_999_999_534) * (W << 32)) / 2**64
    edges = {(e.parent, e.child, e.netuid): e for e in snapshot.edges}
    assert edges[(t.P3, t.M, 1)].proportion == t.MAX and edges[(t.P3, t.M, 1)].inherited_alpha == 0
    assert edges[(t.P, t.V2, 2)].proportion is None and edges[(t.P, t.V2, 2)].inherited_alpha == 0
    samples = parse_exposition(render_snapshot(snapshot).decode())
    into_m = {dict(k)["parent_hotkey"]: x for (n, k), x in samples.items()
              if n == "bittensor_childkey_inherited_alpha" and dict(k)["child_hotkey"] == t.M}
    assert sum(into_m.values()) == series(samples, "bittensor_validator_stake_from_parents_alpha", hotkey=t.M, netuid=1)
    assert series(samples, "bittensor_childkey_proportion_ratio", parent_hotkey=t.P, child_hotkey=t.V2, netuid=2) is None
    assert series(samples, "bittensor_childkey_inherited_alpha", parent_hotkey=t.P, child_hotkey=t.V2, netuid=2) == 0
    assert series(samples, "bittensor_chain_anomalous_entries", rule="parents_do_not_mirror_children", netuid=1) == 1
    # history follows ChildKeys: the same edges as the mirrored chain's, so nothing to record
    state, _ = state_of(build_snapshot(chain_read(), SCOPE), HistoryState.empty(), 0.05)
    assert state_of(build_snapshot(chain_read(parents=parents), SCOPE), state, 0.05)[0].edges == state.edges


def test_a_parent_listed_twice_counts_twice_as_the_chain_iterates_the_list():
    parents = {**mirrored(t.CHILD_KEYS), (t.M, 1): ((t.HALF, t.P2), (t.HALF, t.P2), (t.MAX, t.P3))}
    snapshot = build_snapshot(chain_read(parents=parents), SCOPE)
    m = by_key(snapshot)[(t.M, 1)]
    share = 300 * t.RAO * Q_HALF / 2**32  # 149_999_999_930.15..., truncated on its own twice
    assert m.from_parents_alpha == 2 * share + 500 * t.RAO and m.parents == 3
    assert m.inherited_alpha == 50 * t.RAO + 2 * 149_999_999_930 + 500 * t.RAO
    edge = next(e for e in snapshot.edges if (e.parent, e.child) == (t.P2, t.M))
    assert edge.inherited_alpha == 2 * share
    assert flagged(chain_read(parents=parents)) == {("duplicate_parent", 1): 1}, "the same proportion both times: mirrored"


def test_a_swapped_pending_list_is_exported_and_applied_as_the_chain_applies_it():
    # P2's list names M twice (the last at a quarter) and P2 itself: applied, it is M at a quarter.
    pending = {(1, t.P2): (((t.HALF, t.M), (t.HALF, t.P2), (t.QUARTER, t.M)), 7300)}
    read = chain_read(pending=pending)
    snapshot = build_snapshot(read, ScopeConfig(min_stake_weight=100, watch=(WatchedHotkey(t.M, "M"),)))
    check_snapshot(snapshot)
    (exported,) = [p for p in snapshot.pending if p.parent == t.P2]
    assert exported.children == ((t.QUARTER, t.M),)
    assert [(e.child, e.current, e.pending) for e in snapshot.pending_effects if e.parent == t.P2] == [(t.M, t.HALF, t.QUARTER)]
    assert snapshot.chain_pending[0].children == pending[(1, t.P2)][0], "history keeps the list as stored"
    samples = parse_exposition(render_snapshot(snapshot).decode())
    assert series(samples, "bittensor_childkey_pending_children", parent_hotkey=t.P2, netuid=1) == 1
    assert series(samples, "bittensor_chain_anomalous_entries", rule="pending_self_or_duplicate", netuid=1) == 1
    # Applied at the epoch: ChildKeys[P2] = M at a quarter, which history records as applied, not dropped.
    before, _ = state_of(snapshot, HistoryState.empty(), 0.05)
    children = {**read.children, (t.P2, 1): ((t.QUARTER, t.M),)}
    after = chain_read(block=101, pending={}, children=children, parents=mirrored(children))
    _, events = state_of(build_snapshot(after, SCOPE), before, 0.05)
    kinds = {(e.kind, e.hotkey) for e in events}
    assert ("pending_applied", t.P2) in kinds and ("pending_dropped", t.P2) not in kinds
    assert ("proportion_changed", t.M) in kinds and not any(e.child == t.P2 for e in events)


def test_a_duplicate_hotkey_skips_the_epoch_so_the_permits_stay():
    # uid 10 (NP, no permit, the strongest stake) now holds P's hotkey as well: the chain skips the epoch.
    read = chain_read(hotkeys={**chain_read().hotkeys, (1, 10): t.P})
    snapshot = build_snapshot(read, SCOPE)
    check_snapshot(snapshot)
    assert snapshot.projected_permits[1] == t.PERMITS_1
    assert snapshot.projected_permit_changes == {}, "P (watched, weak) would lose its permit at a run epoch"
    (subnet,) = [s for s in snapshot.subnets if s.netuid == 1]
    assert subnet.permit_cutoff_stake_weight is None and subnet.top_contender_stake_weight is None
    assert flagged(read) == {("duplicate_hotkey", 1): 2}
    # the same subnet with its epoch running: P's 325 rao of stake weight is below StakeThreshold
    assert build_snapshot(chain_read(), SCOPE).projected_permit_changes[(t.P, 1)] is False


def test_a_permitted_uid_without_keys_weighs_nothing():
    # uid 9 (Z, the strongest permit holder) has no Keys entry: no validator, weight 0 at the epoch.
    read = chain_read(hotkeys={k: h for k, h in chain_read().hotkeys.items() if k != (1, 9)})
    snapshot = build_snapshot(read, SCOPE)
    check_snapshot(snapshot)
    assert (t.Z, 1) not in by_key(snapshot)
    # Only Z (~499,999 alpha) and NP (2M - a quarter) pass StakeThreshold (1000 alpha) on netuid 1.
    assert build_snapshot(chain_read(), SCOPE).projected_permits[1] == (False,) * 9 + (True, True)
    assert snapshot.projected_permits[1] == (False,) * 10 + (True,), "weight 0: no permit at the next epoch"
    assert flagged(read) == {("permit_without_hotkey", 1): 1}


def test_the_refresh_logs_an_anomaly_once_when_it_appears_and_once_when_it_clears():
    lowered = chain_read(max_take=5000)
    r = refresher(FakeChain(chain_read(), lowered, lowered, chain_read()))
    lines = []
    for _ in range(4):
        with capture_logs() as logs:
            assert r.refresh_once().up
        lines.append([(e["event"], e.get("rule"), e.get("netuid"), e.get("entries")) for e in logs if e.get("rule")])
    assert lines == [
        [],
        [("chain state the write paths would not make", "take_above_max", 1, 1)],
        [],
        [("chain state cleared", "take_above_max", 1, None)],
    ]


@pytest.mark.parametrize("anomaly", [Anomaly("take_above_max", 7, 18), Anomaly("min_take_above_max", None, 1)])
def test_the_gauge_is_a_series_per_rule_and_subnet(anomaly):
    snapshot = replace(build_snapshot(chain_read(), SCOPE), anomalies=(anomaly,))
    samples = parse_exposition(render_snapshot(snapshot).decode())
    netuid = "" if anomaly.netuid is None else anomaly.netuid
    assert series(samples, "bittensor_chain_anomalous_entries", rule=anomaly.rule, netuid=netuid) == anomaly.count


def test_the_counts_kept_between_builds_are_those_of_the_read_counted():
    kept: dict = {}
    base = chain_read()
    reads = [
        base, base,  # the very maps again: taken from what was kept
        chain_read(hotkeys={**base.hotkeys, (1, 10): t.P}),
        chain_read(parents={**base.parents, (t.M, 1): ((t.HALF, t.P2),)}),
        chain_read(permits={**base.permits, 2: (True, True)}, hotkeys={k: h for k, h in base.hotkeys.items() if k != (2, 1)}),
        base,
    ]
    for read in reads:
        assert find_anomalies(read, kept) == find_anomalies(read)
    assert set(kept) == {"links", "uids"}
