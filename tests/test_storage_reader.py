"""``StorageReader`` paging, sharding and batching, in process: no websocket, no server thread.

``FakeConnection`` offers the two SDK methods the reader uses (plus what
``ChainReader.open_finalized`` needs) and answers each request with the
simulated node's own RPC handlers over a ``ChainState``, so keys are built and
pages decoded by the real runtime codec against real finney metadata, while
every request is counted and its concurrency observed.
"""

from __future__ import annotations

from dataclasses import replace

import asyncio
from types import SimpleNamespace
from typing import Any

import bittensor_core
import pytest
from bittensor._transport.codec import RuntimeCodec

from exporter.chain import reader as chain_reader
from exporter.chain import answers, storage
from exporter.chain.reader import ChainReader
from exporter.chain.storage import StorageReader, _shard_bounds
from exporter.snapshot.read_rules import InvalidRead
from simnode import ChainState
from simnode import proxy as p
from simnode.rpc import dispatch
from simnode.state import metadata_blob
from tests import tricky_chain as t
from tests.test_chain_reader import SCOPE, FakeSource

_codecs: dict[int, RuntimeCodec] = {}


def codec_for(spec_version: int) -> RuntimeCodec:
    if spec_version not in _codecs:
        blob = metadata_blob(spec_version)
        _codecs[spec_version] = RuntimeCodec(blob, spec_version=spec_version, transaction_version=1)
    return _codecs[spec_version]


class _Runtimes:
    def __init__(self, state: ChainState):
        self._state = state

    async def codec_at(self, block_hash: str) -> RuntimeCodec:
        return codec_for(self._state.block_by_hash(block_hash).spec_version)


class FakeConnection:
    """The slice of ``SubstrateConnection`` the chain reader uses, over an in-memory chain."""

    def __init__(self, state: ChainState, *, fail_on: tuple[str, int] | None = None, corrupt=None):
        self._state = state
        self._runtimes = _Runtimes(state)
        self.requests: list[tuple[str, list]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._fail_on = fail_on  # (method, n): the n-th request of that method raises
        self.corrupt = corrupt  # (method, params, result) -> result, as simnode.proxy's hooks

    async def rpc_request(self, method: str, params: list | None = None) -> Any:
        self.requests.append((method, params))
        nth = self.count(method)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0)  # let other requests start: a real request is not instantaneous
            if self._fail_on == (method, nth):
                raise ConnectionError("the node went away")
            result = dispatch(self._state, method, params)
            return result if self.corrupt is None else self.corrupt(method, params, result)
        finally:
            self.in_flight -= 1

    async def get_chain_finalised_head(self) -> str:
        return await self.rpc_request("chain_getFinalizedHead", [])

    async def get_block_number(self, block_hash: str) -> int:
        return self._state.block_by_hash(block_hash).number

    def count(self, method: str) -> int:
        return sum(1 for m, _ in self.requests if m == method)

    def sizes(self, method: str) -> list[int]:
        """Keys per request: the count asked of getKeysPaged, the key list of queryStorageAt."""
        return [params[1] if method == "state_getKeysPaged" else len(params[0])
                for m, params in self.requests if m == method]


def reader_over(state: ChainState, max_in_flight: int = 8, **kwargs) -> tuple[StorageReader, FakeConnection]:
    conn = FakeConnection(state, **kwargs)
    head = state.finalized
    return StorageReader(conn, codec_for(head.spec_version), head.hash, asyncio.Semaphore(max_in_flight)), conn


def hk(i: int) -> str:
    return bittensor_core.ss58_encode(i.to_bytes(4, "big") * 8, 42)


def hotkeys_chain(n: int) -> ChainState:
    """Hotkeys 0..n-1 with stake i + 1 on netuid 1 (TotalHotkeyAlpha: Blake2_128Concat keys, evenly spread)."""
    state = ChainState()
    state.set_many("TotalHotkeyAlpha", (([hk(i), 1], i + 1) for i in range(n)))
    state.commit_block()
    return state


def run(coro):
    return asyncio.run(coro)


# -- the whole plan over the real codec ------------------------------------------------------


@pytest.mark.parametrize("spec_version", [393, 365])
def test_the_real_codec_reads_what_the_fake_source_holds(spec_version):
    """The plan over StorageReader + real codec equals the plan over the literal fake source."""
    state = ChainState(spec_version)
    for pallet, item, params, value in t.storage_writes():
        state.set(item, params, value, pallet=pallet)
    state.commit_block()
    conn = FakeConnection(state)
    got = run(ChainReader(max_in_flight=4).read(conn, SCOPE))

    fake = FakeSource.of([*t.storage_writes(), ("Timestamp", "Now", [], state.finalized.timestamp_ms)])
    fake.block_hash = state.finalized.hash
    block = state.finalized.number
    want = run(ChainReader(max_in_flight=4).read_from(fake, SCOPE, block=block, spec_version=spec_version))
    # The real runtime also answers the metagraph API (the literal source has no runtime APIs).
    assert set(got.metagraphs) == {n for n, _ in got.watched_uids if n != 0}
    assert replace(got, metagraphs={}) == want
    # Six small maps in three shards (first read: no sizes remembered), one short keys page each;
    # values fetched per non-empty page; two plain reads, eight batches of under 1,000 keys.
    assert conn.count("state_getKeysPaged") == 6 * 3
    assert conn.count("state_queryStorageAt") <= 2 + 6 * 3 + 8 + 12  # + the twelve activity items (chain/activity.py)


def test_read_is_pinned_to_the_finalized_block():
    state = ChainState()
    state.set("NetworksAdded", [0], True)  # a chain always has root: a read without it is refused
    state.set("TaoWeight", [], 1)
    state.commit_block()
    state.finalized_lag = 1
    state.set("TaoWeight", [], 2)
    state.commit_block()
    conn = FakeConnection(state)
    got = run(ChainReader(max_in_flight=4).read(conn, SCOPE))
    assert (got.block, got.tao_weight) == (1, 1)
    assert {params[-1] for m, params in conn.requests if m.startswith("state_")} == {state.block(1).hash}


# -- scan: paging and sharding ---------------------------------------------------------------


@pytest.mark.parametrize("entries", [0, 1, 3, 4, 5, 8, 13])
@pytest.mark.parametrize("shards", [1, 2, 3, 7, 256, 1000])
def test_scan_returns_every_entry_once_whatever_the_pages_and_shards(monkeypatch, entries, shards):
    monkeypatch.setattr(storage, "PAGE_SIZE", 4)
    state = hotkeys_chain(entries)
    reader, conn = reader_over(state)
    rows = run(reader.scan("TotalHotkeyAlpha", shards=shards))
    assert sorted(rows, key=lambda r: r[1]) == [((hk(i), 1), i + 1) for i in range(entries)]
    assert set(conn.sizes("state_getKeysPaged")) <= {4}
    assert all(0 < size <= 4 for size in conn.sizes("state_queryStorageAt")), "no empty or oversized fetch"
    fetched = [key for m, params in conn.requests if m == "state_queryStorageAt" for key in params[0]]
    assert len(fetched) == len(set(fetched)) == entries, "each value fetched exactly once"
    # Each shard lists its keys page by page and stops at the first short page or foreign key.
    assert conn.count("state_getKeysPaged") <= min(shards, 256) + entries // 4 + 1


def test_scan_of_a_map_over_several_real_pages():
    state = hotkeys_chain(2345)
    reader, conn = reader_over(state)
    rows = run(reader.scan("TotalHotkeyAlpha", shards=3))
    assert len(rows) == 2345 and sum(v for _, v in rows) == sum(range(1, 2346))
    assert set(conn.sizes("state_getKeysPaged")) == {answers.PAGE_SIZE}
    assert max(conn.sizes("state_queryStorageAt")) <= answers.PAGE_SIZE
    assert conn.count("state_getKeysPaged") <= 3 + 2345 // answers.PAGE_SIZE + 1


def test_scan_under_a_prefix_decodes_the_free_key_part_only():
    state = ChainState()
    state.set_many("Keys", [([1, uid], t.hotkey(uid)) for uid in range(6)] + [([2, 0], t.V2)])
    state.commit_block()
    reader, _ = reader_over(state)
    assert sorted(run(reader.scan("Keys", [1], shards=4))) == [(uid, t.hotkey(uid)) for uid in range(6)]
    everything = [((1, uid), t.hotkey(uid)) for uid in range(6)] + [((2, 0), t.V2)]
    assert sorted(run(reader.scan("Keys", shards=2))) == everything


def test_an_identity_keyed_map_scans_whole_with_many_shards():
    """NetworksAdded is keyed by the raw netuid: the shard byte is its low byte, not a hash."""
    state = ChainState()
    state.set_many("NetworksAdded", [([n], True) for n in range(0, 600, 7)])
    state.commit_block()
    reader, _ = reader_over(state)
    assert sorted(n for n, _ in run(reader.scan("NetworksAdded", shards=5))) == list(range(0, 600, 7))


@pytest.mark.parametrize("fail_on", [("state_getKeysPaged", 3), ("state_queryStorageAt", 2)])
def test_a_failed_request_fails_the_scan_and_stops_every_shard(monkeypatch, fail_on):
    monkeypatch.setattr(storage, "PAGE_SIZE", 4)
    state = hotkeys_chain(400)  # 100 pages: shards would page on long after the failure
    reader, conn = reader_over(state, fail_on=fail_on)

    async def scan_then_settle():
        with pytest.raises(ConnectionError):
            await reader.scan("TotalHotkeyAlpha", shards=4)
        requests = len(conn.requests)
        for _ in range(100):  # give anything left running the chance to show itself
            await asyncio.sleep(0)
        return requests, asyncio.all_tasks() - {asyncio.current_task()}

    requests, running = run(scan_then_settle())
    assert running == set() and conn.in_flight == 0
    assert len(conn.requests) == requests, "no request after the scan failed"
    assert requests < 40, "the failure ends the scan early, not after 100 pages"


def test_a_failed_chunk_fails_the_batch_and_stops_the_others(monkeypatch):
    monkeypatch.setattr(storage, "PAGE_SIZE", 4)
    state = hotkeys_chain(100)
    reader, conn = reader_over(state, max_in_flight=2, fail_on=("state_queryStorageAt", 1))

    async def batch_then_settle():
        with pytest.raises(ConnectionError):
            await reader.batch("TotalHotkeyAlpha", [[hk(i), 1] for i in range(100)])
        requests = len(conn.requests)
        for _ in range(100):
            await asyncio.sleep(0)
        return requests, asyncio.all_tasks() - {asyncio.current_task()}

    requests, running = run(batch_then_settle())
    assert running == set() and len(conn.requests) == requests
    assert requests < 10, "most of the 25 queued chunks never start"


# -- batch and values -------------------------------------------------------------------------


def test_batch_chunks_by_query_batch_keeps_input_order_and_applies_defaults():
    state = hotkeys_chain(300)
    reader, conn = reader_over(state)
    present = [[hk(i), 1] for i in range(300)]
    missing = [[hk(i), 2] for i in range(5300)]
    asked = [key for pair in zip(missing, present) for key in pair] + missing[300:]
    values = run(reader.batch("TotalHotkeyAlpha", asked))
    want = {tuple(k): i + 1 for i, k in enumerate(present)}
    assert values == [want.get(tuple(k), 0) for k in asked]
    assert conn.sizes("state_queryStorageAt") == [2500, 2500, 600]


def test_batch_defaults_follow_the_query_kind():
    state = ChainState()
    state.set("Uids", [1, t.P], 0)
    state.set("Keys", [1, 0], t.P)
    state.commit_block()
    reader, conn = reader_over(state)
    assert run(reader.batch("Uids", [[1, t.P], [1, t.M]])) == [0, None], "OptionQuery: missing is None"
    assert run(reader.batch("Keys", [[1, 0], [1, 1]])) == [t.P, t.hotkey(0)], "ValueQuery: the zero account"
    assert run(reader.batch("Keys", [])) == []
    assert conn.count("state_queryStorageAt") == 2, "an empty batch makes no request"


def test_values_reads_several_items_in_one_request():
    state = ChainState()
    state.set("TaoWeight", [], t.TAO_WEIGHT)
    state.set("MaxChildkeyTake", [], 11796)
    state.commit_block()
    reader, conn = reader_over(state)
    reads = [("TaoWeight", []), ("MaxChildkeyTake", []), ("StakeThreshold", []), ("NetworksAdded", [3])]
    got = run(reader.values(reads))
    assert got == [t.TAO_WEIGHT, 11796, 0, False]
    assert run(reader.values([("Now", [])], pallet="Timestamp")) == [state.finalized.timestamp_ms]
    assert conn.count("state_queryStorageAt") == 2


def test_has_item_follows_the_runtime_metadata():
    reader, conn = reader_over(ChainState())
    assert reader.has_item("ChildKeys") and reader.has_item("Now", pallet="Timestamp")
    assert not reader.has_item("NoSuchItem") and not reader.has_item("ChildKeys", pallet="Timestamp")
    assert conn.requests == []


# -- the semaphore ---------------------------------------------------------------------------


@pytest.mark.parametrize("cap", [1, 2, 5])
def test_requests_in_flight_never_exceed_the_semaphore(monkeypatch, cap):
    monkeypatch.setattr(storage, "PAGE_SIZE", 4)
    state = hotkeys_chain(60)
    reader, conn = reader_over(state, max_in_flight=cap)

    async def everything():
        keys = [[hk(i), 1] for i in range(40)]
        return await asyncio.gather(reader.scan("TotalHotkeyAlpha", shards=8), reader.batch("TotalHotkeyAlpha", keys))

    rows, values = run(everything())
    assert len(rows) == 60 and values == list(range(1, 41))
    assert conn.max_in_flight == cap, "the cap is reached (reads run in parallel) and never exceeded"


# -- answers checked as they arrive ------------------------------------------------------------


def tricky_state() -> ChainState:
    state = ChainState()
    for pallet, item, params, value in t.storage_writes():
        state.set(item, params, value, pallet=pallet)
    state.commit_block()
    return state


def refused(coro) -> InvalidRead:
    with pytest.raises(InvalidRead) as error:
        run(coro)
    return error.value


def made_up(params, n: int) -> list[str]:
    return [f"{params[0]}{i:08x}" for i in range(1, n + 1)]


@pytest.mark.parametrize("hook, rule", [
    (p.replace_result("state_getKeysPaged", None), "null_answer"),
    (p.replace_result("state_getKeysPaged", {"keys": []}), "malformed_answer"),
    (p.rewrite_pages(lambda params, keys: keys[:-1] + ["0x1234"]), "key_outside_prefix"),
    (p.rewrite_pages(lambda params, keys: keys[:-1] + ["0xnothex"]), "malformed_answer"),
    (p.rewrite_pages(lambda params, keys: sorted(keys, reverse=True)), "keys_not_ascending"),
    (p.rewrite_pages(lambda params, keys: keys[:-1] + keys[-2:-1]), "keys_not_ascending"),  # a key twice
    (p.rewrite_pages(lambda params, keys: [params[2]] + keys[:-1]), "keys_not_after_start"),
    (p.made_up_pages(lambda params: made_up(params, params[1] + 1)), "page_too_long"),
    (p.made_up_pages(lambda params: made_up(params, params[1])), "keys_not_after_start"),  # the same page again
    (p.null_values(""), "listed_key_without_value"),
])
def test_a_key_page_the_node_could_not_have_sent_is_refused(monkeypatch, hook, rule):
    monkeypatch.setattr(storage, "PAGE_SIZE", 4)
    reader, conn = reader_over(hotkeys_chain(9), corrupt=hook)
    assert refused(reader.scan("TotalHotkeyAlpha", shards=2)).rule == rule


@pytest.mark.parametrize("hook, rule", [
    (p.replace_result("state_queryStorageAt", None), "null_answer"),
    (p.replace_result("state_queryStorageAt", {"changes": []}), "malformed_answer"),
    (p.replace_result("state_queryStorageAt", [{"block": None}]), "malformed_answer"),
    (p.drop_half_of_the_answer(), "missing_keys"),
    (p.extra_changes([("0x" + "ab" * 40, "0x00")]), "unrequested_key"),
    (p.duplicate_first_change(), "duplicate_key"),
    (p.other_block("0x" + "cd" * 32), "answer_from_other_block"),
    (p.on("state_queryStorageAt", lambda params, r: [{**g, "changes": [[k, 7] for k, _ in g["changes"]]} for g in r]),
     "malformed_answer"),
    (p.on("state_queryStorageAt", lambda params, r: [{**g, "changes": [[k] for k, _ in g["changes"]]} for g in r]),
     "malformed_answer"),
    (p.on("state_queryStorageAt", lambda params, r: [
        {**g, "changes": [[k, "0x" + "00" * (answers.MAX_VALUE_BYTES + 1)] for k, _ in g["changes"]]} for g in r]),
     "value_too_large"),
])
def test_a_storage_answer_the_node_could_not_have_sent_is_refused(hook, rule):
    reader, _ = reader_over(hotkeys_chain(5), corrupt=hook)
    keys = [[hk(i), 1] for i in range(5)]
    assert refused(reader.batch("TotalHotkeyAlpha", keys)).rule == rule
    assert refused(reader.values([("TaoWeight", []), ("StakeThreshold", [])])).rule == rule


def test_answers_echoing_keys_in_upper_case_or_missing_values_of_asked_keys_are_fine():
    upper = p.on("state_queryStorageAt", lambda params, r: [
        {**g, "block": g["block"].upper().replace("0X", "0x"), "changes": [[k.upper().replace("0X", "0x"), v] for k, v in g["changes"]]}
        for g in r])
    reader, _ = reader_over(hotkeys_chain(5), corrupt=upper)
    assert run(reader.batch("TotalHotkeyAlpha", [[hk(i), 1] for i in range(7)])) == [1, 2, 3, 4, 5, 0, 0]


def test_a_key_asked_twice_is_asked_once():
    reader, conn = reader_over(hotkeys_chain(2))
    assert run(reader.batch("TotalHotkeyAlpha", [[hk(0), 1], [hk(1), 1], [hk(0), 1]])) == [1, 2, 1]
    assert conn.sizes("state_queryStorageAt") == [2]


def test_endless_pages_stop_at_the_scan_cap_with_nothing_left_running(monkeypatch):
    monkeypatch.setattr(storage, "PAGE_SIZE", 10)
    reader, conn = reader_over(hotkeys_chain(3), corrupt=p.endless_pages())

    async def scan_then_settle():
        with pytest.raises(InvalidRead) as error:
            await reader.scan("TotalHotkeyAlpha", shards=4, max_keys=95)
        requests = len(conn.requests)
        for _ in range(100):
            await asyncio.sleep(0)
        return error.value, requests, asyncio.all_tasks() - {asyncio.current_task()}

    error, requests, running = run(scan_then_settle())
    assert error.rule == "scan_cap" and "TotalHotkeyAlpha" in error.detail
    assert running == set() and len(conn.requests) == requests, "paging stopped at the cap"
    listed = conn.count("state_getKeysPaged")
    assert listed <= 95 // 10 + 4 + 1, "at most the pages up to the cap, one per shard in flight"


def test_a_map_at_its_cap_is_read_whole():
    reader, _ = reader_over(hotkeys_chain(30))
    assert len(run(reader.scan("TotalHotkeyAlpha", shards=3, max_keys=30))) == 30
    assert refused(reader.scan("TotalHotkeyAlpha", shards=3, max_keys=29)).rule == "scan_cap"


def test_the_reader_caps_netuid_maps_at_the_netuid_bound_and_other_maps_only_by_the_byte_budget():
    reader = ChainReader(max_in_flight=4)
    assert reader.scan_cap("NetworksAdded") == reader.scan_cap("ValidatorPermit") == 4096
    assert reader.scan_cap("ParentKeys") is reader.scan_cap("ChildKeys") is None
    run(reader.read(FakeConnection(tricky_state()), SCOPE))
    assert reader.scan_cap("ChildKeys") is None, "not what the last read held (see test_scan_budget)"


def test_the_read_is_admitted_by_the_gate_and_a_refused_one_leaves_the_baseline():
    state = tricky_state()
    reader = ChainReader(max_in_flight=4)
    first = run(reader.read(FakeConnection(state), SCOPE))
    assert reader.gate.last_good is first
    state.set("ChildKeys", [t.P2, 1], [(t.HALF, t.P2)])
    state.commit_block()
    assert refused(reader.read(FakeConnection(state), SCOPE)).rule == "self_child"
    assert reader.gate.last_good is first


@pytest.mark.parametrize("hook, rule", [
    (p.replace_result("chain_getFinalizedHead", None), "block_hash_malformed"),
    (p.replace_result("chain_getFinalizedHead", "0x1234"), "block_hash_malformed"),
])
def test_a_malformed_head_is_refused_before_anything_is_read_at_it(hook, rule):
    conn = FakeConnection(tricky_state(), corrupt=hook)
    assert refused(ChainReader(max_in_flight=4).read(conn, SCOPE)).rule == rule
    assert [m for m, _ in conn.requests] == ["chain_getFinalizedHead"]


def test_a_head_before_the_last_good_one_is_refused_before_anything_is_read_at_it():
    state = tricky_state()
    for _ in range(4):
        state.commit_block()
    reader = ChainReader(max_in_flight=4)
    run(reader.read(FakeConnection(state), SCOPE))
    state.commit_block()
    conn = FakeConnection(state)
    conn.get_block_number = lambda block_hash: _number(0)
    assert refused(reader.read(conn, SCOPE)).rule == "block_number"
    conn.get_block_number = lambda block_hash: _number(state.finalized.number - 2)
    assert refused(reader.read(conn, SCOPE)).rule == "block_went_back"
    assert {m for m, _ in conn.requests} == {"chain_getFinalizedHead"}


async def _number(n: int) -> int:
    return n


# -- shard bounds ----------------------------------------------------------------------------


def test_shard_bounds_cover_the_key_space_without_overlap():
    assert _shard_bounds("0xab", 1) == [("0xab", None)]
    assert _shard_bounds("0xab", 0) == [("0xab", None)]
    assert _shard_bounds("0xab", 4) == [
        ("0xab", "0xab40"), ("0xab40", "0xab80"), ("0xab80", "0xabc0"), ("0xabc0", None)
    ]
    for shards in (2, 3, 7, 32, 255, 256, 10_000):
        bounds = _shard_bounds("0xab", shards)
        assert len(bounds) == min(shards, 256)
        assert bounds[0][0] == "0xab" and bounds[-1][1] is None
        assert all(end == start for (_, end), (start, _) in zip(bounds, bounds[1:])), "contiguous"
        assert all(lo < hi for lo, hi in bounds[:-1]), "no empty range"


def test_the_read_after_a_failed_one_collects_the_failed_connection(monkeypatch):
    """A dropped connection is cyclic garbage (~3 MB); without a collection a refused endpoint grew the process steadily."""
    collections = []
    monkeypatch.setattr(chain_reader, "gc", SimpleNamespace(collect=lambda *a: collections.append(a)))
    state = tricky_state()
    reader = ChainReader(max_in_flight=4)
    run(reader.read(FakeConnection(state), SCOPE))
    assert collections == [], "nothing to collect after a good read"
    refused(reader.read(FakeConnection(state, corrupt=p.replace_result("state_queryStorageAt", None)), SCOPE))
    assert collections == []
    run(reader.read(FakeConnection(state), SCOPE))
    run(reader.read(FakeConnection(state), SCOPE))
    assert len(collections) == 1, "once, at the start of the read after the failure"
