"""A reader kept from refresh to refresh reads exactly what a fresh one reads.

The chain reader reuses the last read's work where its inputs are equal (the params lists
and their storage keys, the decoded values by raw value, the mapping of uids to hotkeys,
stage 3's plan, the scope's tracked candidates). Each step of a changing chain is read by
the long-lived reader and by a new one; the two reads must be equal in every field.
"""

from __future__ import annotations

import asyncio

import pytest

from exporter.chain.reader import ChainReader
from exporter.chain.reuse import ValueCache
from exporter.config import ScopeConfig, WatchedHotkey
from exporter.snapshot.anomalies import find_anomalies
from exporter.snapshot.read_rules import InvalidRead
from simnode import ChainState
from simnode.scenarios import RAO, deterministic_hotkey, demo
from tests.test_storage_reader import FakeConnection, codec_for


def read(reader: ChainReader, state: ChainState, scope: ScopeConfig):
    """The read, or the rule it was refused by."""
    try:
        return asyncio.run(reader.read(FakeConnection(state), scope))
    except InvalidRead as refused:
        return refused.rule


def changes(state: ChainState, world):
    """Steps that each change one kind of input of the read (and one that changes nothing)."""
    n = 1
    uid_hotkey = world.hotkeys[n][3]
    yield "nothing"
    state.set("TotalHotkeyAlpha", [uid_hotkey, n], world.stake[(uid_hotkey, n)] + 5 * RAO)
    yield "a stake moved"
    newcomer = deterministic_hotkey(1, "newcomer")
    state.set("Keys", [n, 3], newcomer)
    state.delete("Uids", [n, uid_hotkey])
    state.set("Uids", [n, newcomer], 3)
    state.set("TotalHotkeyAlpha", [newcomer, n], 7 * RAO)
    yield "a uid re-registered by another hotkey"
    size = len(world.hotkeys[n])
    extra = deterministic_hotkey(2, "newcomer")
    state.set("SubnetworkN", [n], size + 1)
    state.set("Keys", [n, size], extra)
    state.set("Uids", [n, extra], size)
    yield "a subnet grew by one uid"
    (parent, netuid), links = sorted(world.child_keys.items())[0]
    child = links[0][1]
    state.set("ChildKeys", [parent, netuid], [(2**63, child)])
    for _, old in links:  # the parent leaves each old child's parents; the one child keeps it at 1/2
        others = [(q, p) for q, p in world.parent_keys[(old, netuid)] if p != parent]
        if old == child:
            others.append((2**63, parent))
        if others:
            state.set("ParentKeys", [old, netuid], others)
        else:
            state.delete("ParentKeys", [old, netuid])
    yield "a parent changed its children"
    permits = list(world.permits[n])
    first = permits.index(True)
    permits[first] = False
    state.set("ValidatorPermit", [n], permits)
    yield "a permit lost"
    state.set("ChildkeyTake", [child, netuid], 1234)
    state.set("TotalHotkeyAlpha", [parent, 0], 0)
    yield "a take set, a root stake gone"
    empty = permits.index(False)
    state.delete("Keys", [n, empty])
    yield "a uid without a permit emptied: nobody is registered there"
    permits[empty] = True
    state.set("ValidatorPermit", [n], permits)
    yield "the empty uid given a permit: a state the chain can hold (weight 0 at the epoch)"
    state.set("Keys", [n, empty], world.hotkeys[n][2])  # uid 2 holds it too
    yield "a hotkey twice in Keys: the chain skips the subnet's epochs"


def test_a_kept_reader_reads_what_a_fresh_one_reads_at_every_step():
    state = ChainState()
    world = demo(state)
    watched = sorted(world.child_keys)[0][0]
    for scope in (ScopeConfig(), ScopeConfig(watch=(WatchedHotkey(hotkey=watched, alias="watched"),))):
        kept = ChainReader(max_in_flight=4)
        for step in changes(state, world):
            state.commit_block()
            assert read(kept, state, scope) == read(ChainReader(max_in_flight=4), state, scope), step
        last = read(kept, state, scope)
        assert not isinstance(last, str), "published: the chain can hold it"
        assert {(a.rule, a.netuid) for a in find_anomalies(last)} == {("duplicate_hotkey", 1)}
        state = ChainState()
        world = demo(state)


def test_decoded_values_are_reused_only_when_immutable_and_for_the_same_codec():
    codec, other = codec_for(393), codec_for(365)
    cache = ValueCache()
    take = codec.storage_entry("SubtensorModule", "ChildkeyTake")
    children = codec.storage_entry("SubtensorModule", "ChildKeys")
    raws = ["0x3930", None, "0x3930", "0xffff"]
    cache.start(codec)
    first = cache.decode(codec, take, ("SubtensorModule", "ChildkeyTake"), raws)
    assert first == [12345, 0, 12345, 65535]
    cache.start(codec)
    assert cache.decode(codec, take, ("SubtensorModule", "ChildkeyTake"), raws[::-1]) == first[::-1]
    # A list (a child set) is decoded every time: a value handed out twice could be changed through the other.
    link = "0x04" + "00" * 7 + "80" + "11" * 32
    one = cache.decode(codec, children, ("SubtensorModule", "ChildKeys"), [link])
    cache.start(codec)
    two = cache.decode(codec, children, ("SubtensorModule", "ChildKeys"), [link])
    assert one == two and one[0] is not two[0]
    # Another codec (a runtime upgrade): nothing reused, the values decoded by that codec.
    assert cache.decode(other, other.storage_entry("SubtensorModule", "ChildkeyTake"),
                        ("SubtensorModule", "ChildkeyTake"), raws) == first


def test_an_unchanged_scan_gets_the_last_decoded_rows_and_a_changed_one_is_decoded():
    codec = codec_for(393)
    cache = ValueCache()
    entry = codec.storage_entry("SubtensorModule", "SubnetworkN")
    prefix = "0x" + codec.storage_key(entry, []).hex()
    scan = ("SubtensorModule", "SubnetworkN")
    key = prefix + "0100"  # netuid 1 (Identity hasher, u16 little-endian)
    cache.start(codec)
    first = cache.decode_map(codec, entry, scan, [(key, "0x0001")], 0)
    assert first == codec.decode_map_changes(entry, [(key, "0x0001")], fixed=0)
    cache.start(codec)
    assert cache.decode_map(codec, entry, scan, [(key, "0x0001")], 0) is first
    cache.start(codec)
    moved = cache.decode_map(codec, entry, scan, [(key, "0x0002")], 0)
    assert moved == codec.decode_map_changes(entry, [(key, "0x0002")], fixed=0) != first


def test_the_value_table_stays_within_twice_what_a_read_asks():
    codec = codec_for(393)
    cache = ValueCache()
    take = codec.storage_entry("SubtensorModule", "ChildkeyTake")
    item = ("SubtensorModule", "ChildkeyTake")
    for step in range(8):  # every value moves every read: the worst case
        cache.start(codec)
        assert len(cache._tables.get(item, ())) <= 2 * 3000 + 1024
        raws = [f"0x{(step * 3000 + i) % 65536:04x}" for i in range(3000)]
        assert cache.decode(codec, take, item, raws) == [int.from_bytes(bytes.fromhex(r[2:]), "little") for r in raws]


def test_stages_read_ahead_with_the_last_plans_are_used_only_for_those_very_plans(monkeypatch):
    """Stages 2 and 3 are fetched at once with the last read's plans. When the plan holds, that
    fetch is the stage's (its failure the read's); when it changed, it is dropped, its failure
    with it, and the stage asks for its own plan; nothing is left running either way."""
    state = ChainState()
    world = demo(state)
    scope = ScopeConfig()
    reader = ChainReader(max_in_flight=4)
    read(reader, state, scope)
    guessed = reader._plans.last_stakes
    real = ChainReader._fetch_stakes

    async def fetch_stakes(self, source, plan):
        if plan is guessed:
            raise ConnectionError("the read-ahead failed")
        return await real(self, source, plan)

    monkeypatch.setattr(ChainReader, "_fetch_stakes", fetch_stakes)

    async def read_and_leave_nothing():
        try:
            return await reader.read(FakeConnection(state), scope)
        finally:
            assert asyncio.all_tasks() == {asyncio.current_task()}, "a read-ahead left running"

    state.commit_block()
    with pytest.raises(ConnectionError, match="read-ahead"):
        asyncio.run(read_and_leave_nothing())  # the same plan: the read-ahead is the stage
    (parent, netuid), links = sorted(world.child_keys.items())[0]
    state.set("ChildKeys", [parent, netuid], list(links[:1]))
    for _, child in links[1:]:
        others = [(q, p) for q, p in world.parent_keys[(child, netuid)] if p != parent]
        if others:
            state.set("ParentKeys", [child, netuid], others)
        else:
            state.delete("ParentKeys", [child, netuid])
    state.commit_block()
    assert asyncio.run(read_and_leave_nothing()) == read(ChainReader(max_in_flight=4), state, scope)
    assert reader._plans.last_stakes is not guessed, "the plan changed, so the read-ahead was dropped"
