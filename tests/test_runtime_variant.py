"""Runtime drift, end to end: the real SDK and exporter against the simulated node serving the
newer runtime variant (``simnode/metadata/README.md``: spec 393 plus the items later runtimes
declare). Every expectation is worked out by hand from the chain's rules, not by the exporter."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from bittensor._transport import SubstrateConnection

from exporter.config import ScopeConfig, WatchedHotkey
from simnode import ChainState, SimNode
from simnode.rpc import RpcError, dispatch
from simnode.scenarios import demo
from simnode.state import METADATA_DIR, METADATA_FILES, NEWER_RUNTIME_SPEC, runtime_for
from tests import tricky_chain as t
from tests.harness import series, validator_values

S = "SubtensorModule"
RAO = 1e9
ADDED_ITEMS = ("MinChildkeyTakePerSubnet", "ChildkeyThresholdSuspended", "ChildkeyThresholdChecks",
               "LastEpochBlock", "PendingEpochAt", "SubnetEpochIndex", "ActivityCutoffFactorMilli")
# P2 and V2 watched: the metagraph check then covers subnets 1 and 2 (V2 is registered on 2).
SCOPE = ScopeConfig(min_stake_weight=100, watch=(WatchedHotkey(t.P2, "suspended-owner"), WatchedHotkey(t.V2, "v2")))

# The variant's additions to the tricky chain:
# - takes: MinChildkeyTake 4000 for every subnet, MinChildkeyTakePerSubnet[1] = 6000, none on 2;
# - suspensions (ChildkeyThresholdSuspended, keyed by the hotkey alone, value ()): P3 (600 TAO of
#   stake, below the 1,000 threshold) and P2 (300 + 200), which owns subnet 1 here;
# - P2 also gives V2 half of its stake on subnet 2, where it does not own the subnet;
# - dynamic tempo: subnet 1 has an owner-triggered epoch at block 100 (before LastEpochBlock 0 +
#   tempo 360), subnet 2 none (LastEpochBlock 50 + 360).
MIN_TAKE, MIN_TAKE_1 = 4000, 6000
VARIANT_WRITES = [
    (S, "MinChildkeyTake", [], MIN_TAKE),
    (S, "MinChildkeyTakePerSubnet", [1], MIN_TAKE_1),
    (S, "ChildkeyThresholdSuspended", [t.P3], ()),
    (S, "ChildkeyThresholdSuspended", [t.P2], ()),
    (S, "SubnetOwnerHotkey", [1], t.P2),
    (S, "ChildKeys", [t.P2, 2], [(t.HALF, t.V2)]),
    (S, "ParentKeys", [t.V2, 2], [(t.HALF, t.P2)]),
    (S, "TotalHotkeyAlpha", [t.P2, 2], 200 * 10**9),
    (S, "LastEpochBlock", [1], 0),
    (S, "PendingEpochAt", [1], 100),
    (S, "LastEpochBlock", [2], 50),
]


def variant_chain(extra=()) -> ChainState:
    state = ChainState(NEWER_RUNTIME_SPEC)
    for pallet, item, params, value in [*t.storage_writes(), *VARIANT_WRITES, *extra]:
        state.set(item, params, value, pallet=pallet)
    state.commit_block()
    return state


@pytest.fixture
def variant_node():
    with SimNode(variant_chain()) as node:
        yield node


def next_epoch_over_the_wire(url: str, netuids) -> dict:
    """``SubnetInfoRuntimeApi.get_next_epoch_start_block`` of each subnet at the finalized head:
    a ``state_call`` through the real SDK's connection, encoded and decoded by the runtime's types.
    (Not ``SubstrateConnection.runtime_call``: it sends the call data without ``0x``, which real
    nodes accept and the simulated node refuses.)"""
    runtime = runtime_for(NEWER_RUNTIME_SPEC)
    method = runtime.runtime_api_map()["SubnetInfoRuntimeApi"]["get_next_epoch_start_block"]
    ((_, netuid_type),) = method["inputs"]

    async def ask():
        conn = SubstrateConnection(url, max_retries=2, response_timeout=10)
        await conn.initialize()
        try:
            head = await conn.get_chain_finalised_head()
            answers = {}
            for n in netuids:
                data = "0x" + bytes(runtime.encode(netuid_type, n)).hex()
                answer = await conn.rpc_request("state_call", ["SubnetInfoRuntimeApi_get_next_epoch_start_block", data, head])
                answers[n] = runtime.decode(method["output"], bytes.fromhex(answer[2:]))
            return answers
        finally:
            await conn.close()
    return asyncio.run(ask())


# -- the variant itself ---------------------------------------------------------------------


def test_the_variant_is_derived_deterministically_from_the_real_metadata(tmp_path):
    out = tmp_path / "variant.scale"
    subprocess.run([sys.executable, str(METADATA_DIR / "derive_newer_runtime.py"),
                    str(METADATA_DIR / METADATA_FILES[393]), str(out)], check=True, capture_output=True)
    assert out.read_bytes() == (METADATA_DIR / METADATA_FILES[NEWER_RUNTIME_SPEC]).read_bytes()


def test_the_variant_declares_the_newer_items_with_the_sdks_types_and_the_real_runtimes_do_not():
    variant = runtime_for(NEWER_RUNTIME_SPEC)
    assert variant.constant("System", "Version")["spec_version"] == NEWER_RUNTIME_SPEC
    suspended = variant.storage_entry(S, "ChildkeyThresholdSuspended")
    assert (suspended.param_hashers, suspended.modifier) == (["Blake2_128Concat"], "Optional")
    assert variant.decode(suspended.value_type, b"") == ()
    per_subnet = variant.storage_entry(S, "MinChildkeyTakePerSubnet")
    assert per_subnet.param_hashers == ["Identity"]
    assert variant.decode(per_subnet.value_type, bytes(variant.encode(per_subnet.value_type, 6000))) == 6000
    api = variant.runtime_api_map()["SubnetInfoRuntimeApi"]
    assert {"get_next_epoch_start_block", "get_selective_metagraph"} <= set(api)
    for spec in (393, 365):
        real = runtime_for(spec)
        for item in ADDED_ITEMS:
            with pytest.raises(Exception):
                real.storage_entry(S, item)
        assert "get_next_epoch_start_block" not in real.runtime_api_map()["SubnetInfoRuntimeApi"]


@pytest.mark.parametrize("spec", [393, 365])
def test_a_real_runtime_does_not_answer_the_next_epoch_api(spec):
    state = ChainState(spec)
    state.commit_block()
    with pytest.raises(RpcError, match="is not found"):
        dispatch(state, "state_call", ["SubnetInfoRuntimeApi_get_next_epoch_start_block", "0x0100", None])


def test_the_node_answers_the_next_epoch_by_the_chains_formula():
    """``run_coinbase.rs`` get_next_epoch_start_block (and its tests in ``tests/tempo_control.rs``)."""
    state = ChainState(NEWER_RUNTIME_SPEC)
    cases = {  # netuid: (Tempo, LastEpochBlock, PendingEpochAt) -> answer
        1: ((50, 100, 0), 150),     # last + tempo
        2: ((50, 100, 120), 120),   # a triggered epoch before it
        3: ((50, 100, 200), 150),   # one after it changes nothing
        4: ((0, 100, 120), None),   # tempo 0: never
        5: ((None, None, None), 360),  # nothing stored: tempo 360 (the default) from block 0
    }
    for netuid, ((tempo, last, pending), _) in cases.items():
        for item, value in (("Tempo", tempo), ("LastEpochBlock", last), ("PendingEpochAt", pending)):
            if value is not None:
                state.set(item, [netuid], value)
    state.commit_block()
    rt = state.runtime
    output = rt.runtime_api_map()["SubnetInfoRuntimeApi"]["get_next_epoch_start_block"]["output"]
    for netuid, (_, want) in cases.items():
        answer = dispatch(state, "state_call", ["SubnetInfoRuntimeApi_get_next_epoch_start_block",
                                                "0x" + netuid.to_bytes(2, "little").hex(), None])
        assert rt.decode(output, bytes.fromhex(answer[2:])) == want, netuid


# -- the exporter on the variant, over the wire ---------------------------------------------------


def test_the_per_subnet_minimum_raises_effective_takes(variant_node, exporter_factory):
    """Effective take = max(ChildkeyTake, MinChildkeyTake, MinChildkeyTakePerSubnet[n])."""
    exporter = exporter_factory(variant_node, scope=SCOPE)
    assert exporter.refresh()
    s = exporter.scrape()
    want = {  # (hotkey, netuid): effective take, of 65535
        (t.C1, 1): MIN_TAKE_1,  # ChildkeyTake 0
        (t.C3, 1): MIN_TAKE_1,  # 5000 < 6000
        (t.M, 1): MIN_TAKE_1,   # 3000 < 6000
        (t.C2, 1): 11796,       # above both minimums
        (t.Z, 1): MIN_TAKE_1,   # no ChildkeyTake entry
        (t.V2, 2): MIN_TAKE,    # no per-subnet minimum on subnet 2: the global one
    }
    for (hotkey, netuid), take in want.items():
        assert series(s, "bittensor_validator_childkey_take_ratio", hotkey=hotkey, netuid=netuid) == pytest.approx(
            take / 65535, rel=1e-12), (hotkey, netuid)


def test_a_suspended_parents_edges_go_inert_except_on_the_subnet_it_owns(variant_node, exporter_factory):
    exporter = exporter_factory(variant_node, scope=SCOPE)
    assert exporter.refresh()
    s = exporter.scrape()
    w = 858_993_459 / 2**32  # q(TaoWeight)
    # M (subnet 1): P3's edge is inert (suspended, subnet 1 is P2's); P2's is live (P2 owns subnet 1).
    # A_in = 300e9 * 2147483647 / 2**32 = 149_999_999_930.15082; A_inh = floor(50e9 + A_in);
    # T_inh = 0 (neither M nor P2 holds root stake): SW = A_inh.
    # P3 (subnet 1): its one child is inert, so it keeps all of its own: A 500e9, T 100e9,
    # SW = 500e9 + floor-free 100e9 * w = 519_999_999_995.34338...
    # V2 (subnet 2): P2's edge is inert there (OWNER owns subnet 2): own 5000e9, root 10e9.
    # P2 (subnet 1): its edge to M is live, as on the real runtimes: keeps 150_000_000_069.
    want = {
        (t.M, 1): dict(own=50e9, root=0, to_children=0.0, from_parents=149_999_999_930.15082, inherited=199_999_999_930,
                       inherited_root=0, stake_weight=199_999_999_930.0, parents=1, children=0),
        (t.P3, 1): dict(own=500e9, root=100e9, to_children=0.0, from_parents=0.0, inherited=500e9,
                        inherited_root=100e9, stake_weight=500e9 + 100e9 * w, parents=0, children=0),
        (t.V2, 2): dict(own=5000e9, root=10e9, to_children=0.0, from_parents=0.0, inherited=5000e9,
                        inherited_root=10e9, stake_weight=5000e9 + 10e9 * w, parents=0, children=0),
        (t.P2, 1): t.EXPECTED[t.P2],
    }
    for (hotkey, netuid), expected in want.items():
        got = validator_values(s, hotkey, netuid)
        for name, value in expected.items():
            assert got[name] == pytest.approx(value / RAO if name not in ("parents", "children") else value,
                                              rel=1e-15), (hotkey, netuid, name)
    edge = "bittensor_childkey_proportion_ratio"
    assert series(s, edge, parent_hotkey=t.P3, child_hotkey=t.M, netuid=1) is None
    assert series(s, edge, parent_hotkey=t.P2, child_hotkey=t.V2, netuid=2) is None
    assert series(s, edge, parent_hotkey=t.P2, child_hotkey=t.M, netuid=1) == pytest.approx(0.5)
    suspended = "bittensor_validator_childkey_suspended"
    assert series(s, suspended, hotkey=t.P3, netuid=1) == 1
    assert series(s, suspended, hotkey=t.P2, netuid=1) == 0, "the owner's exemption"
    assert series(s, suspended, hotkey=t.M, netuid=1) == 0


def test_the_metagraph_check_reads_zero_on_the_variant(variant_node, exporter_factory):
    """The node's metagraph follows the variant's rules (suspensions included): ours agree to the rao."""
    exporter = exporter_factory(variant_node, scope=SCOPE)
    assert exporter.refresh()
    s = exporter.scrape()
    for netuid in (1, 2):
        assert series(s, "bittensor_subnet_metagraph_difference_rao", netuid=netuid) == 0, netuid


def test_the_next_epoch_block_is_the_runtime_apis(variant_node, exporter_factory):
    """The reader reads LastEpochBlock, PendingEpochAt and Tempo in bulk (three batched requests for
    every subnet, instead of one runtime call per subnet); the block it serves is the API's."""
    exporter = exporter_factory(variant_node, scope=SCOPE)
    assert exporter.refresh()
    s = exporter.scrape()
    api = next_epoch_over_the_wire(variant_node.url, (1, 2))
    assert api == {1: 100, 2: 410}, "PendingEpochAt set and earlier; not set"
    for netuid, block in api.items():
        assert series(s, "bittensor_subnet_next_epoch_block", netuid=netuid) == block


def test_the_activity_cutoff_is_the_factor_times_tempo_on_a_runtime_with_the_factor(exporter_factory):
    """``get_activity_cutoff_blocks``: max(1, ActivityCutoffFactorMilli x Tempo / 1000); the old
    ActivityCutoff, still declared, is not what the runtime uses. Subnet 1: 2,778 per mille of 360
    blocks; subnet 2: the default 13,889 (5,000 blocks), whatever ActivityCutoff says."""
    state = variant_chain([(S, "ActivityCutoffFactorMilli", [1], 2_778), (S, "ActivityCutoff", [2], 77)])
    with SimNode(state) as node:
        exporter = exporter_factory(node, scope=SCOPE)
        assert exporter.refresh()
        s = exporter.scrape()
    assert series(s, "bittensor_subnet_activity_cutoff_blocks", netuid=1) == 2_778 * 360 // 1000 == 1000
    assert series(s, "bittensor_subnet_activity_cutoff_blocks", netuid=2) == 13_889 * 360 // 1000 == 5000


def test_the_next_epoch_block_equals_the_runtime_api_on_every_subnet(exporter_factory):
    """A demo chain on the variant, each subnet in another case: a triggered epoch before, at or
    after LastEpochBlock + tempo, none, tempo 0, and an epoch already due (deferred)."""
    state = ChainState(NEWER_RUNTIME_SPEC)
    demo(state)
    state.commit_block()
    netuids = [n for n in range(1, 64) if state.get("NetworksAdded", [n])]
    assert len(netuids) >= 4
    cases = [  # (Tempo, LastEpochBlock, PendingEpochAt); None: leave it unset
        (100, 0, 1), (360, 7, 100), (360, 7, 0), (0, 7, 20), (360, 7, 367), (None, 3, None),
    ]
    for netuid, (tempo, last, pending) in zip(netuids, cases):
        for item, value in (("Tempo", tempo), ("LastEpochBlock", last), ("PendingEpochAt", pending)):
            if value is not None:
                state.set(item, [netuid], value)
    for _ in range(3):
        state.commit_block()
    with SimNode(state) as node:
        exporter = exporter_factory(node)
        assert exporter.refresh()
        s = exporter.scrape()
        block = series(s, "bittensor_chain_block")
        api = next_epoch_over_the_wire(node.url, netuids)
    assert None in api.values(), "a subnet with tempo 0"
    for netuid in netuids:
        served = series(s, "bittensor_subnet_next_epoch_block", netuid=netuid)
        if api[netuid] is None:
            assert served is None, netuid
        else:
            # An epoch already due (a deferred one, here PendingEpochAt 1) runs at the next
            # block at the earliest: the exporter says so where the API repeats the due block.
            assert served == max(api[netuid], block + 1), netuid
    assert any(a is not None and a <= block for a in api.values()), "the deferred case is covered"
