"""The simulated node's events and history: System.Events per block as the chain deposits them,
state pruning as a pruning node answers it, state_queryStorage, and a month of blocks that is cheap."""

from __future__ import annotations

import asyncio
import time
import tracemalloc

import pytest
from bittensor._transport import SubstrateConnection
from bittensor._transport.errors import StateDiscardedError

from simnode import ChainState, SimNode
from simnode.actions import (
    add_network,
    add_stake,
    register_neuron,
    remove_network,
    remove_stake,
    schedule_children,
    set_childkey_take,
    set_max_allowed_validators,
    set_min_childkey_take,
    set_stake_threshold,
    set_subnet_owner_hotkey,
    swap_hotkey,
)
from simnode.epoch import advance_to
from simnode.rpc import RpcError, dispatch
from simnode.scenarios import U64_MAX, deterministic_hotkey
from simnode.state import EVENTS_KEY, GENESIS_TIME_MS

RAO = 10**9
HK = [deterministic_hotkey(i, "events") for i in range(8)]
COLD = deterministic_hotkey(0, "events-cold")
NETUID = 3


@pytest.fixture(autouse=True)
def runtime_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BITTENSOR_RUNTIME_CACHE_DIR", str(tmp_path / "runtime-cache"))


def run(coro):
    return asyncio.run(coro)


async def sdk_call(simnode: SimNode, fn):
    conn = SubstrateConnection(simnode.url, max_retries=1, response_timeout=10)
    await conn.initialize()
    try:
        return await fn(conn)
    finally:
        await conn.close()


def subtensor_events(records: list[dict]) -> list[tuple]:
    """(phase, extrinsic index, event, attributes) of every SubtensorModule event."""
    return [
        (r["phase"], r["extrinsic_idx"], r["event_id"], r["attributes"])
        for r in records
        if r["module_id"] == "SubtensorModule"
    ]


def world(spec: int) -> ChainState:
    """A subnet with an owner, two registered hotkeys and stake: block 1."""
    state = ChainState(spec)
    add_network(state, NETUID, tempo=10, owner_hotkey=HK[0])
    register_neuron(state, NETUID, 0, HK[0])
    register_neuron(state, NETUID, 1, HK[1])
    add_stake(state, COLD, HK[0], NETUID, 5_000 * RAO)
    state.set("Owner", [HK[1]], COLD)
    state.commit_block()
    return state


@pytest.mark.parametrize("spec", [393, 365])
def test_each_action_deposits_the_chains_event_read_over_the_wire(spec):
    state = world(spec)
    assert subtensor_events(state.events_at(1)) == [
        ("ApplyExtrinsic", 1, "NetworkAdded", (NETUID, 0)),
        ("ApplyExtrinsic", 2, "NeuronRegistered", (NETUID, 0, HK[0])),
        ("ApplyExtrinsic", 3, "NeuronRegistered", (NETUID, 1, HK[1])),
        ("ApplyExtrinsic", 4, "StakeAdded", (COLD, HK[0], 5_000 * RAO, 5_000 * RAO, NETUID, 0)),
    ]
    children = [(U64_MAX // 2, HK[1])]
    set_childkey_take(state, HK[1], NETUID, 1_000)
    schedule_children(state, HK[0], NETUID, children, cooldown=5)
    set_min_childkey_take(state, 100)
    set_max_allowed_validators(state, NETUID, 8)
    set_stake_threshold(state, 1_000 * RAO)
    remove_stake(state, COLD, HK[0], NETUID, 1_000 * RAO, tao=900 * RAO, fee=7)
    number, block_hash = state.commit_block()
    assert state.get("PendingChildKeys", [NETUID, HK[0]]) == (children, number + 5)
    assert state.get("TotalHotkeyAlpha", [HK[0], NETUID]) == 4_000 * RAO

    with SimNode(state) as node:
        records = run(sdk_call(node, lambda c: c.query("System", "Events", block_hash=block_hash)))
    assert subtensor_events(records) == [
        ("ApplyExtrinsic", 1, "ChildKeyTakeSet", (HK[1], 1_000)),
        ("ApplyExtrinsic", 2, "SetChildrenScheduled", (HK[0], NETUID, number + 5, children)),
        ("ApplyExtrinsic", 3, "MinChildKeyTakeSet", 100),
        ("ApplyExtrinsic", 4, "MaxAllowedValidatorsSet", (NETUID, 8)),
        ("ApplyExtrinsic", 5, "StakeThresholdSet", 1_000 * RAO),
        ("ApplyExtrinsic", 6, "StakeRemoved", (COLD, HK[0], 900 * RAO, 1_000 * RAO, NETUID, 7)),
    ]
    # Every extrinsic closes with ExtrinsicSuccess, the timestamp inherent (0) first.
    successes = [r["extrinsic_idx"] for r in records if r["event_id"] == "ExtrinsicSuccess"]
    assert successes == list(range(7))


@pytest.mark.parametrize("spec", [393, 365])
def test_an_epoch_applies_the_pending_set_with_set_children_in_the_block_step(spec):
    state = world(spec)
    children = [(U64_MAX // 4, HK[1])]
    schedule_children(state, HK[0], NETUID, children, cooldown=5)
    scheduled, _ = state.commit_block()  # block 2: cooldown block 7
    ran = advance_to(state, 30)
    assert [b for b, netuids in ran.items() if NETUID in netuids] == [6, 17, 28]  # (b + 4) % 11 == 10
    applied = {b: subtensor_events(state.events_at(b)) for b in range(scheduled + 1, 31) if subtensor_events(state.events_at(b))}
    assert applied == {17: [("Initialization", None, "SetChildren", (HK[0], NETUID, children))]}
    assert state.get("ChildKeys", [HK[0], NETUID]) == children
    assert state.get("ParentKeys", [HK[1], NETUID]) == [(U64_MAX // 4, HK[0])]
    assert state.get("PendingChildKeys", [NETUID, HK[0]]) is None


def test_a_set_the_chain_refuses_at_apply_time_is_dropped_without_an_event():
    state = world(393)
    # HK[1] is HK[0]'s parent: HK[0] cannot take it as a child (bipartite), silently.
    state.set("ParentKeys", [HK[0], NETUID], [(U64_MAX, HK[1])])
    state.set("ChildKeys", [HK[1], NETUID], [(U64_MAX, HK[0])])
    schedule_children(state, HK[0], NETUID, [(U64_MAX, HK[1])], cooldown=1)
    state.commit_block()
    advance_to(state, 20)
    assert all(not subtensor_events(state.events_at(b)) for b in range(3, 21))
    assert state.get("PendingChildKeys", [NETUID, HK[0]]) is None
    assert state.get("ChildKeys", [HK[0], NETUID]) is None


def test_events_are_per_block_and_idle_blocks_hold_only_the_timestamp():
    state = world(393)
    set_childkey_take(state, HK[1], NETUID, 2_000)
    first, _ = state.commit_block()
    state.commit_block()
    set_childkey_take(state, HK[1], NETUID, 3_000)
    third, _ = state.commit_block()
    assert subtensor_events(state.events_at(first)) == [("ApplyExtrinsic", 1, "ChildKeyTakeSet", (HK[1], 2_000))]
    assert [r["event_id"] for r in state.events_at(first + 1)] == ["ExtrinsicSuccess"]
    assert subtensor_events(state.events_at(third)) == [("ApplyExtrinsic", 1, "ChildKeyTakeSet", (HK[1], 3_000))]
    assert state.events_at(0) == []  # genesis: no System.Events at all
    assert state.block(0).storage.get(EVENTS_KEY) is None


@pytest.mark.parametrize("spec", [393, 365])
def test_a_hotkey_swap_moves_the_rows_but_not_the_take_before_the_fix(spec):
    state = world(spec)
    state.set("ChildKeys", [HK[0], NETUID], [(U64_MAX // 2, HK[1])])
    state.set("ParentKeys", [HK[1], NETUID], [(U64_MAX // 2, HK[0])])
    state.set("ChildkeyTake", [HK[1], NETUID], 5_000)
    state.set("TotalHotkeyAlpha", [HK[1], NETUID], 7 * RAO)
    state.commit_block()
    swap_hotkey(state, COLD, HK[1], HK[5])
    number, _ = state.commit_block()
    assert subtensor_events(state.events_at(number)) == [
        ("ApplyExtrinsic", 1, "HotkeySwapped", {"coldkey": COLD, "old_hotkey": HK[1], "new_hotkey": HK[5]})
    ]
    assert state.get("ChildKeys", [HK[0], NETUID]) == [(U64_MAX // 2, HK[5])]
    assert state.get("ParentKeys", [HK[5], NETUID]) == [(U64_MAX // 2, HK[0])]
    assert state.get("ParentKeys", [HK[1], NETUID]) is None
    assert (state.get("Keys", [NETUID, 1]), state.get("Uids", [NETUID, HK[5]]), state.get("Uids", [NETUID, HK[1]])) == (HK[5], 1, None)
    assert state.get("TotalHotkeyAlpha", [HK[5], NETUID]) == 7 * RAO and state.get("Owner", [HK[5]]) == COLD
    # GHSA-2026-014: runtimes before the fix leave the take behind.
    assert state.get("ChildkeyTake", [HK[5], NETUID]) is None and state.get("ChildkeyTake", [HK[1], NETUID]) == 5_000
    swap_hotkey(state, COLD, HK[5], HK[6], carry_take=True)
    assert state.get("ChildkeyTake", [HK[6], NETUID]) is None  # nothing left to carry


def test_swapping_the_owner_hotkey_also_sets_the_subnet_owner_in_the_same_extrinsic():
    state = world(393)
    swap_hotkey(state, COLD, HK[0], HK[7])
    number, _ = state.commit_block()
    assert subtensor_events(state.events_at(number)) == [
        ("ApplyExtrinsic", 1, "SubnetOwnerHotkeySet", (NETUID, HK[7])),
        ("ApplyExtrinsic", 1, "HotkeySwapped", {"coldkey": COLD, "old_hotkey": HK[0], "new_hotkey": HK[7]}),
    ]


def test_replacing_a_uid_registers_the_new_hotkey_and_clears_the_permit_when_asked():
    state = world(393)
    state.set("ValidatorPermit", [NETUID], [True, True])
    state.commit_block()
    register_neuron(state, NETUID, 1, HK[4])
    assert state.get("ValidatorPermit", [NETUID]) == [True, True]  # spec 393: before the 2026-05-27 change
    register_neuron(state, NETUID, 1, HK[3], clear_permit=True)
    number, _ = state.commit_block()
    assert state.get("ValidatorPermit", [NETUID]) == [True, False]
    assert (state.get("Keys", [NETUID, 1]), state.get("Uids", [NETUID, HK[1]]), state.get("Uids", [NETUID, HK[4]])) == (HK[3], None, None)
    assert [e[2:] for e in subtensor_events(state.events_at(number))] == [
        ("NeuronRegistered", (NETUID, 1, HK[4])), ("NeuronRegistered", (NETUID, 1, HK[3]))]


def test_owner_hotkey_and_network_removal():
    state = world(365)
    set_subnet_owner_hotkey(state, NETUID, HK[1])
    remove_network(state, NETUID)
    number, _ = state.commit_block()
    assert [e[2:] for e in subtensor_events(state.events_at(number))] == [
        ("SubnetOwnerHotkeySet", (NETUID, HK[1])), ("NetworkRemoved", NETUID)]
    assert state.get("NetworksAdded", [NETUID]) is None and state.get("Keys", [NETUID, 0]) is None
    assert state.get("TotalHotkeyAlpha", [HK[0], NETUID]) is None


def test_fields_by_type_name_fit_a_runtime_with_and_without_a_field():
    state = ChainState(393)
    fields = {"T::AccountId": HK[0], "NetUid": 9, "u16": 77}  # the netuid is dropped where the variant has none
    state.emit("SubtensorModule", "ChildKeyTakeSet", fields)
    with pytest.raises(ValueError, match="needs field"):
        state.emit("SubtensorModule", "ChildKeyTakeSet", {"T::AccountId": HK[0]})
    with pytest.raises(ValueError, match="has 2 fields"):
        state.emit("SubtensorModule", "ChildKeyTakeSet", [HK[0]])
    number, _ = state.commit_block()
    assert subtensor_events(state.events_at(number)) == [("ApplyExtrinsic", 1, "ChildKeyTakeSet", (HK[0], 77))]


# -- history: pruning and state_queryStorage ------------------------------------------


def pruned_chain() -> ChainState:
    state = ChainState(state_pruning=256)
    state.set("TaoWeight", [], 1)
    state.commit_block()
    state.advance(400)
    return state


def test_a_pruning_node_discards_old_state_but_keeps_headers():
    state = pruned_chain()
    head = state.head.number
    old, kept = state.block(head - 257), state.block(head - 256)
    key = "0x" + state.key("TaoWeight").hex()
    for method, params in [
        ("state_getStorageAt", [key, old.hash]),
        ("state_queryStorageAt", [[key], old.hash]),
        ("state_getKeysPaged", ["0x", 10, None, old.hash]),
        ("state_call", ["Metadata_metadata_versions", "0x", old.hash]),
        ("state_getRuntimeVersion", [old.hash]),
    ]:
        with pytest.raises(RpcError) as error:
            dispatch(state, method, params)
        assert (error.value.code, error.value.message) == (
            4003, f"Client error: UnknownBlock: State already discarded for {old.hash}"), method
    assert dispatch(state, "state_getStorageAt", [key, kept.hash]) == "0x0100000000000000"
    assert dispatch(state, "chain_getHeader", [old.hash])["number"] == hex(old.number)
    assert dispatch(state, "chain_getBlockHash", [[old.number, 1]]) == [old.hash, state.block(1).hash]

    with SimNode(state) as node:  # the SDK recognises the answer as discarded state
        with pytest.raises(StateDiscardedError) as error:
            run(sdk_call(node, lambda c: c.query("SubtensorModule", "TaoWeight", block_hash=old.hash)))
    # (the SDK first reads the runtime at the parent block: that one's state is gone too)
    assert state.state_discarded(state.block_by_hash(error.value.block_hash))


def test_query_storage_lists_every_key_first_then_only_changes():
    state = ChainState()
    tao_weight, now, events = state.key("TaoWeight"), state.key("Now", pallet="Timestamp"), EVENTS_KEY
    state.set("TaoWeight", [], 5)
    first, _ = state.commit_block()
    state.advance(2)  # idle: nothing of TaoWeight or Events changes
    set_min_childkey_take(state, 3)
    emitted, _ = state.commit_block()
    state.set("TaoWeight", [], 6)
    changed, _ = state.commit_block()
    hexes = ["0x" + k.hex() for k in (tao_weight, events)]
    result = dispatch(state, "state_queryStorage", [hexes, state.block(first).hash, state.head.hash])
    by_block = {state.block_by_hash(r["block"]).number: dict(r["changes"]) for r in result}
    idle = state.block(first + 1).events
    assert sorted(by_block) == [first, emitted, changed]  # blocks with no change are left out
    assert by_block[first] == {hexes[0]: "0x0500000000000000", hexes[1]: "0x" + idle.hex()}
    assert by_block[emitted] == {hexes[1]: "0x" + state.block(emitted).events.hex()}
    assert by_block[changed] == {hexes[0]: "0x0600000000000000", hexes[1]: "0x" + idle.hex()}
    # Timestamp.Now changes in every block; an absent key is listed once, as null.
    missing = "0x" + state.key("TaoWeight", pallet="SubtensorModule").hex()[:-2] + "00"
    stamps = dispatch(state, "state_queryStorage", [["0x" + now.hex(), missing], state.block(1).hash, None])
    assert len(stamps) == state.head.number
    assert stamps[0]["changes"][1] == [missing, None] and all(len(r["changes"]) == 1 for r in stamps[1:])
    assert int.from_bytes(bytes.fromhex(stamps[-1]["changes"][0][1][2:]), "little") == GENESIS_TIME_MS + changed * 12_000


def test_query_storage_fails_like_a_node_on_pruned_unknown_and_reversed_ranges():
    state = pruned_chain()
    key = ["0x" + state.key("TaoWeight").hex()]
    head = state.head.number
    cases = [
        ([key, state.block(head - 300).hash, None], 4003, "State already discarded for " + state.block(head - 300).hash),
        ([key, state.block(head).hash, state.block(head - 1).hash], 4001, "from number > to number"),
        ([key, "0x" + "11" * 32, None], 4001, "Cannot resolve a block range"),
    ]
    for params, code, text in cases:
        with pytest.raises(RpcError) as error:
            dispatch(state, "state_queryStorage", params)
        assert error.value.code == code and text in error.value.message
    assert len(dispatch(state, "state_queryStorage", [key, state.block(head - 256).hash, None])) == 1
    state.deny_unsafe_rpc = True  # a public endpoint (--rpc-methods safe)
    with pytest.raises(RpcError) as error:
        dispatch(state, "state_queryStorage", [key, state.head.hash, None])
    assert (error.value.code, error.value.message) == (-32601, "RPC call is unsafe to be called externally")


def test_query_storage_over_the_wire_reads_events_of_a_range():
    state = world(393)
    for take in (1_000, 2_000, 3_000):
        set_childkey_take(state, HK[1], NETUID, take)
        state.commit_block()
    with SimNode(state) as node:
        async def read(conn):
            hashes = await conn.rpc_request("chain_getBlockHash", [[2, 4]])
            return await conn.rpc_request("state_queryStorage", [["0x" + EVENTS_KEY.hex()], *hashes])
        result = run(sdk_call(node, read))
    assert [state.block_by_hash(r["block"]).number for r in result] == [2, 3, 4]
    runtime = state.runtime
    takes = [subtensor_events(runtime.decode(runtime.storage_entry("System", "Events").value_type,
                                             bytes.fromhex(r["changes"][0][1][2:])))[0][3][1] for r in result]
    assert takes == [1_000, 2_000, 3_000]


def test_a_month_of_blocks_with_a_few_hundred_changes_builds_in_seconds_and_little_memory():
    started = time.perf_counter()
    state = world(393)
    for day in range(30):
        for change in range(10):  # 300 changes, 720 blocks apart
            set_childkey_take(state, HK[1], NETUID, 1_000 + day * 10 + change)
            add_stake(state, COLD, HK[0], NETUID, RAO)
            state.commit_block()
            state.advance(719)
    elapsed = time.perf_counter() - started
    assert state.head.number == 1 + 30 * 7_200
    assert elapsed < 20, elapsed  # 1.2 s measured
    # Idle blocks cost nothing: only the 300 changed blocks hold storage or events of their own.
    assert len(state._segments) == 2 + 300 and len(state._events) == 1 + 300
    changes = list(state.storage_changes([EVENTS_KEY], 2, state.head.number))
    assert len(changes) == 2 * 300  # each change block and the idle block after it
    assert state.block(state.head.number).timestamp_ms == GENESIS_TIME_MS + state.head.number * 12_000

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    state.advance(7_200)  # one more day
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 64 * 1024, grown  # a few hundred bytes measured
