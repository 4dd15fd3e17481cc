"""The read's map scans are held to a memory budget in bytes (``chain.max_scan_bytes``), not to a
guess of how large a map may grow: a map the chain really holds is read however much it grew
since the last read (or at a cold start, after a restart), and what an endpoint makes up stops
at the budget with a message naming the map and the setting.

In process over ``FakeConnection`` (the simulated node's RPC handlers, the real runtime codec).
"""

from __future__ import annotations

import asyncio

import pytest

from exporter.chain import storage
from exporter.chain.reader import ChainReader
from exporter.chain.storage import ScanBudget
from exporter.snapshot.read_rules import InvalidRead
from simnode import ChainState
from simnode import proxy as p
from tests.test_chain_reader import SCOPE
from tests.test_storage_reader import FakeConnection, hk, hotkeys_chain, reader_over, refused, run, tricky_state

# TotalHotkeyAlpha[hotkey, netuid] as answered: the key is "0x" and 82 bytes in hex (32 of
# pallet and item hashes, 16 + 32 of Blake2_128Concat(hotkey), 2 of the u16 netuid), 166
# characters; its u64 value "0x" and 8 bytes, 18 characters.
STAKE_ENTRY_BYTES = 166 + 18


def test_a_map_at_the_budget_is_read_whole_and_one_byte_more_is_refused():
    reader, _ = reader_over(hotkeys_chain(30))
    reader.budget = ScanBudget(30 * STAKE_ENTRY_BYTES)  # 5,520
    assert len(run(reader.scan("TotalHotkeyAlpha", shards=3))) == 30
    assert reader.budget.used == 5520

    reader, _ = reader_over(hotkeys_chain(30))
    reader.budget = ScanBudget(5519)
    error = refused(reader.scan("TotalHotkeyAlpha", shards=3))
    assert error.rule == "scan_cap"
    assert error.detail.startswith("TotalHotkeyAlpha: ") and "chain.max_scan_bytes (5519 bytes)" in error.detail


def test_the_scans_of_one_read_share_its_budget():
    """Scans run side by side; together they hold at most the budget."""
    reader, _ = reader_over(hotkeys_chain(30))
    reader.budget = ScanBudget(30 * STAKE_ENTRY_BYTES + 100)
    run(reader.scan("TotalHotkeyAlpha"))
    error = refused(reader.scan("TotalHotkeyAlpha"))
    assert error.rule == "scan_cap" and "TotalHotkeyAlpha" in error.detail
    assert reader.budget.by_item["TotalHotkeyAlpha"] > 30 * STAKE_ENTRY_BYTES + 100


def test_endless_pages_stop_at_the_budget_with_nothing_left_running(monkeypatch):
    monkeypatch.setattr(storage, "PAGE_SIZE", 10)
    reader, conn = reader_over(hotkeys_chain(3), corrupt=p.endless_pages())
    reader.budget = ScanBudget(20_000)

    async def scan_then_settle():
        with pytest.raises(InvalidRead) as error:
            await reader.scan("TotalHotkeyAlpha", shards=4)
        requests = len(conn.requests)
        for _ in range(100):
            await asyncio.sleep(0)
        return error.value, requests, asyncio.all_tasks() - {asyncio.current_task()}

    error, requests, running = run(scan_then_settle())
    assert error.rule == "scan_cap" and "chain.max_scan_bytes" in error.detail
    assert running == set() and len(conn.requests) == requests, "paging stopped at the budget"
    # Made-up keys grow by 8 characters a page (each page starts after the last one's keys):
    # the budget is crossed within a few pages per shard, each page at most 10 keys of < 300 characters.
    assert 20_000 < reader.budget.used <= 20_000 + 4 * 2 * 10 * 300
    assert conn.count("state_getKeysPaged") <= 20_000 // (10 * 66) + 4 + 1


def link_chain(state: ChainState, parents: range, netuid: int = 1) -> None:
    """One child per parent (parent i -> child i + 10^7), mirrored in ParentKeys, as the chain keeps them."""
    half = 2**63
    state.set_many("ChildKeys", (([hk(i), netuid], [(half, hk(i + 10**7))]) for i in parents))
    state.set_many("ParentKeys", (([hk(i + 10**7), netuid], [(half, hk(i))]) for i in parents))


def test_a_map_three_times_its_last_good_size_is_read_and_published():
    """22,000 entries, then 66,000: past both of the old key caps (twice the last size, and 65,536)."""
    state = tricky_state()
    link_chain(state, range(10**6, 10**6 + 21_996))
    state.commit_block()
    reader = ChainReader(max_in_flight=8)
    first = run(reader.read(FakeConnection(state), SCOPE))
    assert len(first.children) == 4 + 21_996  # the tricky chain's 4 parents and ours

    link_chain(state, range(10**6 + 21_996, 10**6 + 65_996))
    state.commit_block()
    grown = run(reader.read(FakeConnection(state), SCOPE))
    assert len(grown.children) == 3 * len(first.children) == 66_000 and reader.gate.last_good is grown
    assert len(grown.parents) == len(first.parents) + 44_000


def test_a_hundred_thousand_childkeys_at_a_cold_start_are_read_and_published():
    """A restarted exporter knows no last size: what the chain holds is read all the same
    (it was refused at 65,536 entries, then on every refresh, and again after each restart)."""
    state = tricky_state()
    link_chain(state, range(10**6, 10**6 + 100_000))
    state.commit_block()
    reader = ChainReader(max_in_flight=8)
    read = run(reader.read(FakeConnection(state), SCOPE))
    assert len(read.children) == 100_004 and reader.gate.last_good is read
    assert read.children[(hk(10**6 + 99_999), 1)] == ((2**63, hk(10**6 + 99_999 + 10**7)),)


def test_a_read_past_the_budget_names_the_map_and_the_next_read_gets_a_whole_budget():
    state = tricky_state()
    link_chain(state, range(10**6, 10**6 + 1000))
    state.commit_block()
    measure = ChainReader(max_in_flight=8)
    run(measure.read(FakeConnection(state), SCOPE))
    # ChildKeys: 1,004 entries of 166-character keys, values of 1 + 40 bytes in hex (84 characters)
    # for 1,000 of them. Every scan of the read together: some 400 kB.
    small = ChainReader(max_in_flight=8, max_scan_bytes=200_000)
    error = refused(small.read(FakeConnection(state), SCOPE))
    assert error.rule == "scan_cap" and "chain.max_scan_bytes (200000 bytes)" in error.detail
    assert error.detail.split(":")[0] in ("ChildKeys", "ParentKeys"), "the big maps cross it"
    roomy = ChainReader(max_in_flight=8, max_scan_bytes=1_000_000)
    assert len(run(roomy.read(FakeConnection(state), SCOPE)).children) == 1004
    assert len(run(roomy.read(FakeConnection(state), SCOPE)).children) == 1004, "each read its own budget"
