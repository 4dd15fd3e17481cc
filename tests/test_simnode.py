"""The simulated node speaks the real SDK transport's wire protocol correctly."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from bittensor._transport import SubstrateConnection
from bittensor._transport.errors import BlockNotFound, SubstrateRequestException
from websockets.asyncio.client import connect

from simnode import SIMNODE_GENESIS_HASH, ChainState, SimNode
from simnode.scenarios import U64_MAX, deterministic_hotkey, demo, mainnet_scale

RAO = 10**9
REPO_ROOT = Path(__file__).resolve().parent.parent
HK = [deterministic_hotkey(i, "test") for i in range(8)]


@pytest.fixture(autouse=True)
def runtime_cache(tmp_path, monkeypatch):
    """Keep the SDK's metadata disk cache out of the home directory."""
    monkeypatch.setenv("BITTENSOR_RUNTIME_CACHE_DIR", str(tmp_path / "runtime-cache"))
    return tmp_path / "runtime-cache"


@pytest.fixture
def node():
    """A node over a small hand-built chain (block 1 = the values below)."""
    state = ChainState()
    state.set("ChildKeys", [HK[0], 3], [(U64_MAX // 2, HK[1]), (U64_MAX // 4, HK[2])])
    state.set("ParentKeys", [HK[1], 3], [(U64_MAX // 2, HK[0])])
    state.set("PendingChildKeys", [3, HK[0]], ([(U64_MAX, HK[3])], 7300))
    state.set("TotalHotkeyAlpha", [HK[0], 3], 123_456 * RAO)
    state.set("ValidatorPermit", [3], [True, False, True])
    state.set("TaoWeight", [], int(0.18 * U64_MAX))
    state.commit_block()
    with SimNode(state) as simnode:
        yield simnode


@asynccontextmanager
async def sdk(simnode: SimNode):
    conn = SubstrateConnection(simnode.url, max_retries=2, response_timeout=10)
    await conn.initialize()
    try:
        yield conn
    finally:
        await conn.close()


def rpc_code(error: SubstrateRequestException) -> int:
    return error.payload["error"]["code"]


def test_values_round_trip(node):
    async def check():
        async with sdk(node) as conn:
            q = conn.query
            children = await q("SubtensorModule", "ChildKeys", [HK[0], 3])
            assert [tuple(c) for c in children] == [(U64_MAX // 2, HK[1]), (U64_MAX // 4, HK[2])]
            pending, cooldown = await q("SubtensorModule", "PendingChildKeys", [3, HK[0]])
            assert ([tuple(p) for p in pending], cooldown) == ([(U64_MAX, HK[3])], 7300)
            assert await q("SubtensorModule", "TotalHotkeyAlpha", [HK[0], 3]) == 123_456 * RAO
            assert await q("SubtensorModule", "ValidatorPermit", [3]) == [True, False, True]
            assert await q("SubtensorModule", "TaoWeight") == int(0.18 * U64_MAX)
            assert await q("Timestamp", "Now") == 1_767_225_600_000 + 12_000
            # Missing keys: Default items decode their default, Optional ones None.
            assert await q("SubtensorModule", "TotalHotkeyAlpha", [HK[5], 3]) == 0
            assert await q("SubtensorModule", "ChildKeys", [HK[5], 3]) == []
            assert await q("SubtensorModule", "MaxChildkeyTake") == 11_796
            assert await q("SubtensorModule", "Uids", [3, HK[0]]) is None
            batch = await conn.query_batch(
                "SubtensorModule", "TotalHotkeyAlpha", [[HK[0], 3], [HK[5], 3]]
            )
            assert batch == [123_456 * RAO, 0]

    asyncio.run(check())


def test_initialize_calls_and_disk_cache(node, runtime_cache):
    async def check():
        async with sdk(node):
            pass
        first = dict(node.requests)
        node.reset_counters()
        async with sdk(node):
            pass
        return first, dict(node.requests)

    first, second = asyncio.run(check())
    # Cold: runtime version, genesis hash (cache key), then the V15 metadata.
    assert first == {"state_getRuntimeVersion": 1, "chain_getBlockHash": 1, "state_call": 1}
    # Warm: metadata comes from BITTENSOR_RUNTIME_CACHE_DIR, not the node.
    assert second == {"state_getRuntimeVersion": 1, "chain_getBlockHash": 1}
    assert list(runtime_cache.glob("md*.bin"))


def test_query_map_pages_past_1000():
    state = ChainState()
    hotkeys = [deterministic_hotkey(i, "page") for i in range(2500)]
    state.set_many("TotalHotkeyAlpha", (([hk, 7], i * RAO) for i, hk in enumerate(hotkeys)))
    state.set("TotalHotkeyAlpha", [hotkeys[0], 8], 1)  # another netuid: a neighbour key
    state.commit_block()

    async def check(simnode):
        async with sdk(simnode) as conn:
            simnode.reset_counters()
            result = await conn.query_map("SubtensorModule", "TotalHotkeyAlpha", page_size=1000)
            return [pair async for pair in result]

    with SimNode(state) as simnode:
        pairs = asyncio.run(check(simnode))
        assert simnode.requests["state_getKeysPaged"] == 3  # 1000 + 1000 + 501
    keys = [key for key, _ in pairs]
    assert len(keys) == 2501 and len(set(keys)) == 2501
    expected = {(hk, 7): i * RAO for i, hk in enumerate(hotkeys)} | {(hotkeys[0], 8): 1}
    assert {tuple(k): v for k, v in pairs} == expected


def test_keys_paged_semantics(node):
    state = node.state
    prefix = "0x" + state.key("ChildKeys").hex()
    full = "0x" + state.key("ChildKeys", [HK[0], 3]).hex()

    async def check():
        async with sdk(node) as conn:
            call = conn.rpc_request
            assert await call("state_getKeysPaged", [prefix, 10, None, None]) == [full]
            assert await call("state_getKeysPaged", [prefix, 10, prefix[:10], None]) == [full]
            assert await call("state_getKeysPaged", [prefix, 10, full, None]) == []
            with pytest.raises(SubstrateRequestException, match="count exceeds maximum") as err:
                await call("state_getKeysPaged", [prefix, 1001, None, None])
            assert rpc_code(err.value) == 4002
            with pytest.raises(SubstrateRequestException) as err:
                await call("no_such_method", [])
            assert rpc_code(err.value) == -32601
            with pytest.raises(SubstrateRequestException) as err:
                await call("state_getStorageAt", ["not hex", None])
            assert rpc_code(err.value) == -32602

    asyncio.run(check())


def test_reads_pinned_to_an_older_block():
    state = ChainState()
    state.set("TotalHotkeyAlpha", [HK[0], 1], 1 * RAO)
    state.set("ChildKeys", [HK[0], 1], [(U64_MAX, HK[1])])
    old_number, old_hash = state.commit_block()
    state.set("TotalHotkeyAlpha", [HK[0], 1], 2 * RAO)
    state.delete("ChildKeys", [HK[0], 1])
    _, new_hash = state.commit_block()

    async def check(simnode):
        async with sdk(simnode) as conn:
            alpha = ("SubtensorModule", "TotalHotkeyAlpha", [HK[0], 1])
            assert await conn.query(*alpha, block_hash=old_hash) == 1 * RAO
            assert await conn.query(*alpha, block_hash=new_hash) == 2 * RAO
            assert await conn.query(*alpha) == 2 * RAO  # head
            old = await conn.query_map("SubtensorModule", "ChildKeys", block_hash=old_hash)
            assert len([pair async for pair in old]) == 1
            new = await conn.query_map("SubtensorModule", "ChildKeys", block_hash=new_hash)
            assert [pair async for pair in new] == []
            assert await conn.get_block_hash(old_number) == old_hash
            assert await conn.get_block_number(new_hash) == old_number + 1
            with pytest.raises(BlockNotFound):
                await conn.get_block_hash(99)
            with pytest.raises(SubstrateRequestException, match="UnknownBlock"):
                await conn.rpc_request("state_getStorageAt", ["0x00", "0x" + "ab" * 32])
            assert await conn.rpc_request("chain_getHeader", ["0x" + "ab" * 32]) is None

    with SimNode(state) as simnode:
        asyncio.run(check(simnode))


def test_each_blocks_key_list_is_its_storage_sorted_as_keys_come_and_go():
    """The key list a block pages with is kept from the block before, with the keys added and
    deleted since; it must equal the block's own keys sorted, whatever the order of changes."""
    state = ChainState()
    for n in range(40):
        state.set("Tempo", [n], 360)
    state.commit_block()
    steps = [
        ([40, 41], []),  # keys added
        ([], [3, 17]),  # keys deleted
        ([3], [40]),  # one deleted key back, one added key gone
        ([50], [50]),  # added and deleted within the block: no change
        ([], []),  # an idle block shares the list
        ([60 + i for i in range(30)], list(range(20))),  # most keys change: sorted afresh
    ]
    for added, deleted in steps:
        for n in added:
            state.set("Tempo", [n], 99)
        for n in deleted:
            state.delete("Tempo", [n])
        number, _ = state.commit_block()
        block = state.block(number)
        assert block.keys == sorted(block.storage), (added, deleted)
        assert len(block.keys) == len(set(block.keys))


def test_finalized_head_lags():
    state = ChainState()
    for _ in range(5):
        state.commit_block()
    state.finalized_lag = 2

    async def check(simnode):
        async with sdk(simnode) as conn:
            assert await conn.get_chain_finalised_head() == state.block(3).hash
            assert await conn.get_finalized_block_number() == 3
            assert await conn.get_block_number(None) == 5

    with SimNode(state) as simnode:
        asyncio.run(check(simnode))


def test_raw_batch_and_counters(node):
    key = "0x" + node.state.key("TotalHotkeyAlpha", [HK[0], 3]).hex()
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "chain_getHead", "params": []},
        {"jsonrpc": "2.0", "id": 2, "method": "state_getStorageAt", "params": [key, None]},
        {"jsonrpc": "2.0", "id": 3, "method": "nope_nope", "params": []},
    ]

    async def check():
        async with connect(node.url) as ws:
            await ws.send(json.dumps(batch))
            answers = {a["id"]: a for a in json.loads(await ws.recv())}
            await ws.send("{not json")
            parse_error = json.loads(await ws.recv())
        return answers, parse_error

    node.reset_counters()
    answers, parse_error = asyncio.run(check())
    assert answers[1]["result"] == node.state.head.hash
    assert answers[2]["result"] == "0x" + (123_456 * RAO).to_bytes(8, "little").hex()
    assert answers[3]["error"]["code"] == -32601
    assert parse_error["error"]["code"] == -32700
    assert node.frames == 2
    assert node.requests == {"chain_getHead": 1, "state_getStorageAt": 1, "nope_nope": 1}


def test_latency_and_overlap(node):
    async def check():
        async with sdk(node) as conn:
            node.latency = 0.2
            node.reset_counters()
            started = time.monotonic()
            assert await conn.rpc_request("system_chain") == "Bittensor"
            elapsed = time.monotonic() - started
            await asyncio.gather(*(conn.rpc_request("system_health") for _ in range(8)))
            return elapsed

    assert asyncio.run(check()) >= 0.2
    assert node.max_in_flight >= 2  # requests overlap instead of queueing


def test_fault_hook(node):
    dropped = []

    def fault(method, params):
        if method == "system_chain":
            return ("error", -32000, "boom")
        if method == "system_version":
            return ("result", "faked")
        if method == "system_name" and not dropped:
            dropped.append(method)
            return ("drop",)
        if method == "system_health":
            return ("raw", "{not json")
        return None

    async def check():
        async with sdk(node) as conn:
            node.fault = fault
            with pytest.raises(SubstrateRequestException, match="boom"):
                await conn.rpc_request("system_chain")
            assert await conn.rpc_request("system_version") == "faked"
            # The SDK reconnects after the drop and resubmits the request.
            assert await conn.rpc_request("system_name") == "Subtensor Node"
        async with connect(node.url) as ws:
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "system_health"}))
            return await ws.recv()

    assert asyncio.run(check()) == "{not json"
    assert node.requests["system_name"] == 2


def test_runtime_upgrade_365_to_393():
    state = ChainState(365)
    state.set("TotalHotkeyAlpha", [HK[0], 1], 5)
    _, old_hash = state.commit_block()
    state.set_spec_version(393)
    state.set("TotalHotkeyAlpha", [HK[0], 1], 6)
    _, upgrade_hash = state.commit_block()
    _, new_hash = state.commit_block()

    async def check(simnode):
        async with sdk(simnode) as conn:
            assert await conn.runtime_spec_version() == 393
            version = conn.rpc_request
            assert (await version("state_getRuntimeVersion", [old_hash]))["specVersion"] == 365
            assert (await version("state_getRuntimeVersion", [upgrade_hash]))["specVersion"] == 393
            # Decoding with the metadata served for each block's runtime.
            system_version = conn.get_constant
            assert (await system_version("System", "Version", old_hash))["spec_version"] == 365
            assert (await system_version("System", "Version", new_hash))["spec_version"] == 393
            alpha = ("SubtensorModule", "TotalHotkeyAlpha", [HK[0], 1])
            assert await conn.query(*alpha, block_hash=old_hash) == 5
            assert await conn.query(*alpha, block_hash=new_hash) == 6

    with SimNode(state) as simnode:
        asyncio.run(check(simnode))
        assert simnode.requests["state_call"] == 2  # one metadata download per runtime
    # One genesis (the chain's identity), the blocks after it told apart by the genesis spec.
    assert state.genesis.hash == ChainState(393).genesis.hash == SIMNODE_GENESIS_HASH
    assert state.block(1).hash != ChainState(393).commit_block()[1]


def test_the_genesis_hash_is_configurable_and_served_as_block_0():
    other = "0x" + "2f" * 32
    state = ChainState(genesis_hash=other.upper().replace("0X", "0x"))
    state.commit_block()

    async def check(simnode):
        async with sdk(simnode) as conn:
            assert await conn.rpc_request("chain_getBlockHash", [0]) == other
            assert await conn.genesis_hash() == other
            assert (await conn.rpc_request("chain_getHeader", [state.block(1).hash]))["parentHash"] == other
            assert (await conn.rpc_request("chain_getHeader", [other]))["number"] == "0x0"

    with SimNode(state) as simnode:
        asyncio.run(check(simnode))
    for bad in ("0x1234", "2f" * 33, "0x" + "zz" * 32):
        with pytest.raises(ValueError):
            ChainState(genesis_hash=bad)


def test_mainnet_scale_over_the_wire():
    state = ChainState()
    world = mainnet_scale(state)
    assert world.edge_count >= 3000 and len(world.child_keys) > 1000
    assert len(world.pending) >= 24 and len(world.takes) >= 2000

    async def check(simnode):
        async with sdk(simnode) as conn:
            got = {}
            for item in ("ChildKeys", "ParentKeys"):
                result = await conn.query_map("SubtensorModule", item, page_size=1000)
                got[item] = {tuple(k): [tuple(e) for e in v] async for k, v in result}
            permits = await conn.query("SubtensorModule", "ValidatorPermit", [7])
            return got, permits

    with SimNode(state) as simnode:
        got, permits = asyncio.run(check(simnode))
    assert got["ChildKeys"] == world.child_keys
    assert got["ParentKeys"] == world.parent_keys
    assert permits == world.permits[7] and sum(permits) == 64
    for (parent, n), children in world.child_keys.items():
        assert n != 0 and 1 <= len(children) <= 5
        assert sum(p for p, _ in children) <= U64_MAX
        for proportion, child in children:
            assert (proportion, parent) in world.parent_keys[(child, n)]


def test_scenarios_are_deterministic():
    a, b = ChainState(), ChainState()
    demo(a)
    demo(b)
    assert a.head.hash == b.head.hash and a.head.storage == b.head.storage
    assert len(a.head.storage) > 100


def test_cli_serves_until_sigterm():
    cmd = [sys.executable, "-m", "simnode", "--port", "0", "--scenario", "demo"]
    with subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True) as proc:
        try:
            url = proc.stdout.readline().split()[0]

            async def ask():
                async with connect(url) as ws:
                    frame = {"jsonrpc": "2.0", "id": 1, "method": "system_chain"}
                    await ws.send(json.dumps(frame))
                    return json.loads(await ws.recv())["result"]

            assert asyncio.run(ask()) == "Bittensor"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def test_scenarios_are_identical_across_processes():
    """Tests rebuild a node's state as ground truth in another process: hash seeds must not matter."""
    import os
    import subprocess
    import sys

    code = (
        "import hashlib; from simnode import ChainState; from simnode.scenarios import demo;"
        "s = ChainState(); demo(s, seed=3);"
        "print(hashlib.sha256(repr(sorted(s.head.storage.items())).encode()).hexdigest())"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # Both at once: each is mostly interpreter start-up and imports.
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=root, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}) for seed in ("1", "2")]
    try:
        outputs = [proc.communicate(timeout=60)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert [proc.returncode for proc in procs] == [0, 0]
    assert len(set(outputs)) == 1 and outputs[0].strip()


def test_a_wall_clock_chain_stamps_blocks_with_the_time_they_are_made_never_backwards():
    import time as _time

    state = ChainState(wall_clock=True)
    before = _time.time() * 1000
    first, _ = state.commit_block()
    second, _ = state.commit_block()
    a, b = state.block(first).timestamp_ms, state.block(second).timestamp_ms
    assert before - 1 <= a <= _time.time() * 1000 + 1 and b > a
    assert state.get("Now", [], pallet="Timestamp") == b
