"""Weight-setting liveness and earnings: read in bulk, built, equal to the chain's storage.

The mainnet-scale check reads the simulated chain over the real codec (``FakeConnection``) and
compares every value of every validator in scope with the node's own storage, read key by key
with simnode's storage reader; the rest are literal cases computed by hand.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace

from exporter.chain.reader import ChainReader
from exporter.config import ScopeConfig
from exporter.snapshot.activity import build_activity, cutoff_blocks
from exporter.snapshot.activity_model import ActivityRead
from exporter.snapshot.builder import build_snapshot
from exporter.snapshot.model import ChainRead, frozen
from tests import tricky_chain as t
from tests.test_chain_reader import FakeSource, read as read_literal, tricky_writes

MAX = 2**64 - 1
C, P, Q = t.hotkey(1), t.hotkey(2), t.hotkey(3)


def activity_read(**overrides) -> ActivityRead:
    base = ActivityRead(
        cutoff_item="ActivityCutoff", cutoffs=frozen({1: 5000}), mechanisms=frozen({1: 1}),
        last_update=frozen({1: (90, 40)}), active=frozen({1: (True, False)}),
        validator_trust=frozen({1: (60000, 0)}), dividends=frozen({1: (65535, 0)}), emission=frozen({1: (900, 0)}),
        stake_weight=frozen({1: (40000, 20000)}), alpha_dividends=frozen({(1, C): 700}), root_dividends=frozen({}),
        root_dividends_item="RootAlphaDividendsPerSubnet", delegate_takes=frozen({C: 11796, P: 0}), ck_burn=0,
    )
    return replace(base, **overrides)


def small_read(**overrides) -> ChainRead:
    """C (uid 0) inherits all of P's (uid 1) 600 rao; C has 300 of its own; TaoWeight 0."""
    read = ChainRead(
        block=100, block_hash="0xab", timestamp_ms=1_767_225_600_000, spec_version=393, tao_weight=0,
        stake_threshold=0, min_take=0, max_take=11796, pending_cooldown=7200, netuids=(0, 1),
        permits=frozen({1: (True, True)}), max_validators=frozen({1: 64}), hotkeys=frozen({(1, 0): C, (1, 1): P}),
        watched_uids=frozen({}), children=frozen({(P, 1): ((MAX, C),)}), parents=frozen({(C, 1): ((MAX, P),)}),
        pending=frozen({}), stake=frozen({(C, 1): 300, (P, 1): 600}), takes=frozen({(C, 1): 13107}),
        coldkeys=frozen({C: "cold-c", P: "cold-p"}), tempos=frozen({1: 360}), activity=activity_read(),
    )
    return replace(read, **overrides)


SCOPE = ScopeConfig(min_stake_weight=0)


def test_each_validator_gets_its_uids_entry_of_every_vector():
    snapshot = build_snapshot(small_read(), SCOPE)
    found = {(a.hotkey, a.netuid): a for a in snapshot.activity.validators}
    c, p = found[(C, 1)], found[(P, 1)]
    assert (c.uid, c.last_update, c.blocks_since_update, c.active) == (0, (90,), 10, True)
    assert (p.uid, p.last_update, p.blocks_since_update, p.active) == (1, (40,), 60, False)
    assert (c.validator_trust, c.dividends, c.emission, c.alpha_dividends, c.root_dividends) == (60000, 65535, 900, 700, 0)
    assert (c.delegate_take, p.delegate_take) == (11796, 0)
    # StakeWeight 40000 and 20000, both holding permits
    assert (c.stake_share, p.stake_share) == (40000 / 60000, 20000 / 60000)
    assert snapshot.activity.cutoffs == {1: 5000}


def test_the_childkey_split_is_the_chains_in_u96f32():
    """C's 900 rao of dividends: P's stake gives 600 of C's 900 contribution, so P's part is
    900 x floor(2/3 x 2^32) / 2^32; C keeps its take, 13107/65535 = 1/5, truncated to U96F32."""
    snapshot = build_snapshot(small_read(), SCOPE)
    (earning,) = snapshot.activity.earnings
    share_bits = 900 * (2 * 2**64 // (3 * 2**32))  # factor floor(2/3 x 2^32), times 900 rao
    assert (earning.parent, earning.child) == (P, C)
    assert earning.parent_share == share_bits / 2**32
    assert earning.child_take == (share_bits * (13107 * 2**32 // 65535) >> 32) / 2**32
    assert math.isclose(earning.child_take, 120, rel_tol=1e-8) and earning.burned == 0
    same_coldkey = build_snapshot(small_read(coldkeys=frozen({C: "one", P: "one"})), SCOPE)
    assert same_coldkey.activity.earnings[0].child_take == 0, "no take between hotkeys of one coldkey"
    burning = build_snapshot(small_read(activity=activity_read(ck_burn=MAX // 10)), SCOPE)
    assert math.isclose(burning.activity.earnings[0].burned, 60, rel_tol=1e-8)


def test_the_cutoff_is_the_runtimes():
    assert cutoff_blocks(activity_read(), 1, 360) == 5000
    factor = activity_read(cutoff_item="ActivityCutoffFactorMilli", cutoffs=frozen({1: 13_889, 2: 1}))
    assert cutoff_blocks(factor, 1, 360) == 13_889 * 360 // 1000 == 5000
    assert cutoff_blocks(factor, 2, 360) == 1, "max(1, 1 x 360 / 1000)"


def test_a_uid_without_a_last_update_entry_has_no_activity():
    snapshot = build_snapshot(small_read(activity=activity_read(last_update=frozen({1: (90,)}))), SCOPE)
    assert [(a.hotkey, a.uid) for a in snapshot.activity.validators] == [(C, 0)]


def test_every_mechanism_is_read_at_netuid_plus_4096_and_the_stalest_counts():
    writes = tricky_writes() + [
        ("SubtensorModule", "MechanismCountCurrent", [1], 2),
        ("SubtensorModule", "LastUpdate", [1], [95] * 11),
        ("SubtensorModule", "LastUpdate", [4097], [70] * 5),  # no entry yet for uids 5 and up
    ]
    source = FakeSource.of(writes)
    got = asyncio.run(ChainReader(max_in_flight=4).read_from(source, ScopeConfig(), block=100, spec_version=393))
    assert set(source.asked("LastUpdate")) == {(1,), (2,), (4097,)}
    assert got.activity.last_update[4097] == (70,) * 5
    found = {(a.hotkey, a.netuid): a for a in build_activity(got, build_snapshot(got, SCOPE)).validators}
    p, m = found[(t.P, 1)], found[(t.M, 1)]  # uids 0 and 6
    assert (p.last_update, p.blocks_since_update) == ((95, 70), 30)
    assert (m.last_update, m.blocks_since_update) == ((95, None), 5)


def test_a_runtime_with_tao_dividends_reads_them_as_the_root_part():
    class TaoDividends(FakeSource):
        def has_item(self, item, pallet="SubtensorModule"):
            return item != "RootAlphaDividendsPerSubnet" and (item == "TaoDividendsPerSubnet" or super().has_item(item))

    source = TaoDividends.of(tricky_writes() + [("SubtensorModule", "TaoDividendsPerSubnet", [1, t.P], 42)])
    got = asyncio.run(ChainReader(max_in_flight=4).read_from(source, ScopeConfig(), block=100, spec_version=393))
    assert got.activity.root_dividends_item == "TaoDividendsPerSubnet"
    assert got.activity.root_dividends == {(1, t.P): 42}


def test_the_read_asks_one_request_per_item_not_per_validator():
    source = FakeSource.of(tricky_writes())
    read_literal(source, ScopeConfig())
    activity_calls = [c for c in source.calls if c.items[0] in {"LastUpdate", "Active", "Delegates", "AlphaDividendsPerSubnet"}]
    assert len(activity_calls) == 4


def test_every_value_equals_the_chains_storage_at_mainnet_scale():
    """128 subnets x 256 uids: some subnets' epochs ran with a one-block cutoff after a few uids set
    weights, so Active, vtrust, dividends and emission differ from uid to uid."""
    from simnode import ChainState
    from simnode.activity import dividends_distribution, run_epoch_outputs, set_activity_cutoff, set_weights
    from simnode.epoch import _Storage
    from simnode.scenarios import mainnet_scale
    from tests.test_storage_reader import FakeConnection

    state = ChainState()
    mainnet_scale(state)
    st = _Storage(state)
    for netuid in (3, 50, 128):
        set_activity_cutoff(state, netuid, 1)
        for uid in range(0, 256, 3):
            set_weights(state, netuid, uid)
    state.commit_block()
    block = state.head.number + 1
    for netuid in (3, 50, 128):
        run_epoch_outputs(st, netuid, block, list(st.one("ValidatorPermit", [netuid])),
                          sorted(h for (n, h) in _dividend_keys(st) if n == netuid))
    state.commit_block()
    read = asyncio.run(ChainReader(max_in_flight=8).read(FakeConnection(state), ScopeConfig()))
    snapshot = build_snapshot(read, ScopeConfig())
    activity = snapshot.activity
    assert {(a.hotkey, a.netuid) for a in activity.validators} == {(v.hotkey, v.netuid) for v in snapshot.validators if v.uid is not None}
    assert len(activity.validators) > 8000
    netuids = sorted(activity.cutoffs)
    vectors = {item: dict(zip(netuids, st.many(item, [(n,) for n in netuids])))
               for item in ("LastUpdate", "Active", "ValidatorTrust", "Dividends", "Emission", "StakeWeight", "ValidatorPermit")}
    keys = [(a.netuid, a.hotkey) for a in activity.validators]
    alpha = dict(zip(keys, st.many("AlphaDividendsPerSubnet", keys)))
    root = dict(zip(keys, st.many("RootAlphaDividendsPerSubnet", keys)))
    hotkeys = sorted({a.hotkey for a in activity.validators})
    delegates = dict(zip(hotkeys, st.many("Delegates", [(h,) for h in hotkeys])))
    assert activity.cutoffs == dict(zip(netuids, st.many("ActivityCutoff", [(n,) for n in netuids])))
    inactive = 0
    for a in activity.validators:
        n, uid = a.netuid, a.uid
        weights, permits = vectors["StakeWeight"][n], vectors["ValidatorPermit"][n]
        assert a.last_update == (vectors["LastUpdate"][n][uid],)
        assert a.blocks_since_update == read.block - vectors["LastUpdate"][n][uid]
        assert a.active == vectors["Active"][n][uid]
        assert a.validator_trust == vectors["ValidatorTrust"][n][uid]
        assert a.dividends == vectors["Dividends"][n][uid]
        assert a.emission == vectors["Emission"][n][uid]
        assert a.stake_share == weights[uid] / sum(w for w, p in zip(weights, permits) if p)
        assert (a.alpha_dividends, a.root_dividends) == (alpha[(n, a.hotkey)], root[(n, a.hotkey)])
        assert a.delegate_take == delegates[a.hotkey]
        inactive += not a.active
    assert 0 < inactive < len(activity.validators)
    # The estimate is the chain's split itself while nothing moved since the epoch: the parent gets
    # its part less the child's take and the burn (to the rao: the chain truncates to u64).
    assert len(activity.earnings) > 100
    uid_of = {(a.hotkey, a.netuid): a.uid for a in activity.validators}
    for e in activity.earnings:
        if e.parent not in read.coldkeys:
            continue  # not tracked: the exporter does not know its coldkey
        chain = dict(dividends_distribution(st, e.child, e.netuid, vectors["Emission"][e.netuid][uid_of[(e.child, e.netuid)]]))
        assert abs(e.parent_share - e.child_take - e.burned - chain[e.parent]) <= 1, e


def _dividend_keys(st):
    found = st.key_params(["AlphaDividendsPerSubnet", "RootAlphaDividendsPerSubnet"])
    return found["AlphaDividendsPerSubnet"] + found["RootAlphaDividendsPerSubnet"]


def test_items_an_older_runtime_lacks_are_not_read_and_nothing_is_invented():
    lacking = {"AlphaDividendsPerSubnet", "RootAlphaDividendsPerSubnet", "StakeWeight", "MechanismCountCurrent", "CKBurn"}

    class Older(FakeSource):
        def has_item(self, item, pallet="SubtensorModule"):
            return item not in lacking and super().has_item(item)

    source = Older.of(tricky_writes() + [("SubtensorModule", "LastUpdate", [1], [95] * 11)])
    got = asyncio.run(ChainReader(max_in_flight=4).read_from(source, ScopeConfig(), block=100, spec_version=393))
    assert not lacking & {c.items[0] for c in source.calls}
    a = got.activity
    assert (a.alpha_dividends, a.root_dividends, a.root_dividends_item, a.ck_burn) == ({}, {}, None, 0)
    assert a.stake_weight == {1: (), 2: ()} and a.mechanisms == {1: 1, 2: 1}
    (p,) = [v for v in build_snapshot(got, SCOPE).activity.validators if (v.hotkey, v.netuid) == (t.P, 1)]
    assert (p.last_update, p.stake_share, p.root_dividends) == ((95,), None, None)
