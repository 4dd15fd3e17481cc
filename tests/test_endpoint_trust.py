"""No endpoint can poison the exporter: a forged head, a forged clock, another chain, a forked endpoint.

Each mode goes through a corrupting proxy (or a node of another chain) in front of an honest
simulated node, read by the real SDK over the wire, with history on. For each: nothing of it is
published with up=1 or recorded in history, the last good read stays the reference later reads
are judged against, and the next refresh through an honest endpoint publishes the chain's head.
"""

from __future__ import annotations

import sqlite3
import tracemalloc
from dataclasses import dataclass
from typing import Optional

import pytest
from structlog.testing import capture_logs

from exporter.config import ScopeConfig
from exporter.snapshot.validate import BLOCK_MS, CLOCK_MARGIN_MS, SLACK_BLOCKS
from simnode import ChainState, SimNode
from simnode import proxy as p
from simnode.proxy import CorruptingProxy
from tests import tricky_chain as t
from tests.conftest import write_tricky_chain
from tests.harness import ExporterUnderTest, series

SCOPE = ScopeConfig(min_stake_weight=100)
U64_MAX = 2**64 - 1
OTHER_GENESIS = "0x" + "0e" * 32
# Requests that read the chain's state (a head's runtime version is not read from its state).
STATE_READS = {"state_getKeysPaged", "state_queryStorageAt", "state_queryStorage", "state_call", "state_getStorage"}
# What one poisoned refresh may allocate (Python heap, traced): the honest read of this chain
# takes ~10 MB; a range sized by a forged block gap took gigabytes.
POISONED_REFRESH_BYTES = 64 << 20


@dataclass
class Rig:
    state: ChainState
    node: SimNode
    proxy: CorruptingProxy
    exporter: ExporterUnderTest
    db: str
    asked: Optional[dict] = None  # the requests of the last poisoned refresh, by method

    @property
    def block(self) -> int:
        return self.state.finalized.number

    def now_value(self, ms: int) -> p.Hook:
        """stage 1's Timestamp.Now reads ``ms``."""
        rt = self.state.runtime
        key = "0x" + self.state.key("Now", [], "Timestamp").hex()
        value = "0x" + bytes(rt.encode(rt.storage_entry("Timestamp", "Now").value_type, ms)).hex()
        return p.replace_values({key: value})


@pytest.fixture
def rig(tmp_path):
    state = ChainState()
    write_tricky_chain(state)
    for _ in range(4):
        state.commit_block()
    db = str(tmp_path / "history.db")
    with SimNode(state) as node, CorruptingProxy(node.url) as proxy:
        exporter = ExporterUnderTest(proxy.url, scope=SCOPE, history_path=db, chain_timeout=2, refresh_timeout_seconds=10)
        try:
            # This machine's clock, as the gate sees it, 30 s after the chain's head: the chain is live.
            exporter.session.gate.clock = lambda: state.head.timestamp_ms / 1000 + 30
            assert exporter.refresh()
            yield Rig(state, node, proxy, exporter, db)
        finally:
            exporter.close()


def history_rows(db: str) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {name: conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in tables}


def poisoned(rig: Rig, hook: p.Hook, rule: str, *, blocks: int = 1) -> list[dict]:
    """One refresh through ``hook`` after ``blocks`` new blocks: refused by ``rule``, nothing of it
    published or recorded, the reference kept, bounded in memory; then one honest refresh publishes."""
    exporter = rig.exporter
    reference = exporter.session.gate.last_good
    before = exporter.refresher.current()
    rows = history_rows(rig.db)
    for _ in range(blocks):
        rig.state.commit_block()
    rig.proxy.corrupt = hook
    rig.proxy.reset_counters()
    tracemalloc.start()
    try:
        with capture_logs() as logs:
            bad = exporter.refresher.refresh_now(timeout=60)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        rig.proxy.corrupt = None
        rig.asked = dict(rig.proxy.requests)
    refusals = [e for e in logs if e.get("rule") is not None]
    assert [e["rule"] for e in refusals] == [rule], logs
    assert not bad.up and bad.data is before.data, "nothing of it published"
    assert history_rows(rig.db) == rows, "nothing of it recorded"
    assert exporter.session.gate.last_good is reference, "the last good read stays the reference"
    assert peak < POISONED_REFRESH_BYTES, f"{peak / 1e6:.0f} MB allocated by one poisoned refresh"

    good = exporter.refresher.refresh_now(timeout=60)
    assert good.up, "the next honest read is published"
    assert good.data.snapshot.chain.block == rig.block and series(exporter.scrape(), "bittensor_chain_block") == rig.block
    with sqlite3.connect(rig.db) as conn:
        assert conn.execute("SELECT count(*) FROM events WHERE block > ?", (rig.block,)).fetchone() == (0,)
    return refusals


# -- a forged head -------------------------------------------------------------------------------


def test_a_header_1000_blocks_ahead_is_held_back_before_anything_is_read_at_it(rig):
    refusal, = poisoned(rig, p.header_number(hex(rig.block + 1 + 1000)), "block_ahead_of_clock")
    assert "1001 blocks after block" in refusal["detail"]
    assert not STATE_READS & set(rig.asked), rig.asked


def test_a_header_ahead_within_the_clock_but_not_the_head_is_refused(rig):
    """The clock cannot tell 5 blocks ahead from the truth; the node's own block index can."""
    poisoned(rig, p.header_number(hex(rig.block + 1 + 5)), "block_number_mismatch")


@pytest.mark.parametrize("number", [2**32 - 1, 2**32, 2**40])
def test_a_header_number_past_the_chains_u32_is_refused(rig, number):
    poisoned(rig, p.header_number(hex(number)), "block_number")
    assert not STATE_READS & set(rig.asked), rig.asked


def consistent_header(rig: Rig, number: int) -> p.Hook:
    """The header says ``number``, and the node's block index agrees: a liar thorough about the number."""
    return p.combine(
        p.header_number(hex(number)),
        p.on("chain_getBlockHash", lambda params, result: rig.state.finalized.hash if params == [number] else result),
    )


@pytest.mark.parametrize("number", [2**32 - 2, "1000 ahead"])
def test_after_a_restart_the_head_is_judged_against_the_last_block_history_recorded(rig, number):
    """No read admitted yet: the last block history recorded (and its time) is the reference, so
    a number forged even consistently is refused before anything is read at it, and the events
    since that block are never sized by it."""
    rig.exporter.close()
    fresh = ExporterUnderTest(rig.proxy.url, scope=SCOPE, history_path=rig.db, chain_timeout=2, refresh_timeout_seconds=10)
    fresh.session.gate.clock = lambda: rig.state.head.timestamp_ms / 1000 + 30
    rig.exporter = fresh
    assert fresh.session.gate.last_good is None
    number = rig.block + 1 + 1000 if number == "1000 ahead" else number
    refusal, = poisoned(rig, consistent_header(rig, number), "block_ahead_of_clock")
    assert "the last block history recorded" in refusal["detail"]
    assert not STATE_READS & set(rig.asked), rig.asked


def test_after_a_restart_an_endpoint_behind_what_history_recorded_undoes_nothing(rig):
    """A node still syncing serves a finalized head behind the last block history recorded: its
    state is older than what was recorded, and every difference would be recorded as a change
    going back. Refused as going back (the next endpoint would be tried); published and recorded
    once the node has caught up, with nothing undone."""
    ((parent, netuid), links), *_ = sorted(t.CHILD_KEYS.items())
    _, child = links[-1]
    # An edge removed (both maps, as the chain's write path does): history records it.
    rig.state.set("ChildKeys", [parent, netuid], links[:-1])
    parents = rig.state.get("ParentKeys", [child, netuid])
    rig.state.set("ParentKeys", [child, netuid], [(share, p_) for share, p_ in parents if p_ != parent])
    rig.state.commit_block()
    rig.state.commit_block()
    assert rig.exporter.refresher.refresh_now(timeout=60).up
    with sqlite3.connect(rig.db) as conn:
        recorded = conn.execute("SELECT kind, block FROM events ORDER BY id").fetchall()
    assert "edge_removed" in {kind for kind, _ in recorded}

    rig.exporter.close()
    fresh = ExporterUnderTest(rig.proxy.url, scope=SCOPE, history_path=rig.db, chain_timeout=2, refresh_timeout_seconds=10)
    fresh.session.gate.clock = lambda: rig.state.head.timestamp_ms / 1000 + 30
    rig.exporter = fresh
    rows = history_rows(rig.db)
    rig.state.finalized_lag = 2  # the node's finalized head: two blocks before the edge went
    try:
        with capture_logs() as logs:
            behind = fresh.refresher.refresh_now(timeout=60)
    finally:
        rig.state.finalized_lag = 0
    (refusal,) = [e for e in logs if e.get("rule") is not None]
    assert refusal["rule"] == "block_went_back" and "the last block history recorded" in refusal["detail"]
    assert not behind.up and history_rows(rig.db) == rows, "nothing published, nothing recorded"

    caught_up = fresh.refresher.refresh_now(timeout=60)
    assert caught_up.up and caught_up.data.snapshot.chain.block == rig.block
    with sqlite3.connect(rig.db) as conn:
        assert conn.execute("SELECT kind, block FROM events ORDER BY id").fetchall() == recorded, "nothing undone"


# -- a forged clock --------------------------------------------------------------------------------


def test_a_timestamp_of_u64_max_is_held_back(rig):
    refusal, = poisoned(rig, rig.now_value(U64_MAX), "timestamp_ahead_of_clock")
    assert refusal["reason"] == "invalid"


def test_a_timestamp_just_past_the_clocks_margin_is_held_back(rig):
    clock_ms = int(rig.exporter.session.gate.clock() * 1000) + BLOCK_MS  # the clock after the next block
    poisoned(rig, rig.now_value(clock_ms + CLOCK_MARGIN_MS + 1000), "timestamp_ahead_of_clock")


def test_a_timestamp_in_the_past_but_not_going_back_cannot_cover_blocks_it_has_no_slots_for(rig):
    """The head moves 10 blocks, its Timestamp.Now is forged to the last good read's (plausible on
    its own: not going back, not ahead of the clock): 10 blocks in 0 s."""
    last = rig.exporter.session.gate.last_good
    refusal, = poisoned(rig, rig.now_value(last.timestamp_ms), "block_ahead_of_timestamps", blocks=SLACK_BLOCKS + 5)
    assert f"leave room for {SLACK_BLOCKS + 1}" in refusal["detail"]


def test_blocks_as_fast_as_the_slots_allow_are_published(rig):
    """The bound is the chain's: a head 10 blocks on with 10 slots of time passes."""
    exporter = rig.exporter
    rig.state.advance(10)
    assert exporter.refresh()
    assert exporter.snapshot.chain.block == rig.block


# -- another chain ---------------------------------------------------------------------------------


def other_chain() -> ChainState:
    """The same storage on a chain with another genesis: another network's endpoint."""
    state = ChainState(genesis_hash=OTHER_GENESIS)
    write_tricky_chain(state)
    return state


def test_an_endpoint_of_another_chain_in_the_failover_list_is_refused_at_connect_and_never_read(rig, tmp_path):
    with SimNode(other_chain()) as other:
        db = str(tmp_path / "h.db")
        exporter = ExporterUnderTest([other.url, rig.node.url], scope=SCOPE, history_path=db, chain_timeout=2,
                                     refresh_timeout_seconds=10)
        try:
            labels = [e.label for e in exporter.session.pool.endpoints]
            with capture_logs() as logs:
                assert exporter.refresh(), "the endpoint of this chain is read"
            assert set(other.requests) == {"chain_getBlockHash"}, "asked its genesis, and nothing else"
            refused = [e for e in logs if e["event"] == "endpoint refused: it serves another chain"]
            assert len(refused) == 1 and refused[0]["endpoint"] == labels[0] and OTHER_GENESIS in refused[0]["error"]
            s = exporter.scrape()
            assert series(s, "bittensor_exporter_endpoint_errors_total", endpoint=labels[0], reason="wrong_chain") == 1
            assert series(s, "bittensor_exporter_endpoint_up", endpoint=labels[0]) == 0
            assert series(s, "bittensor_exporter_endpoint_up", endpoint=labels[1]) == 1
            assert series(s, "bittensor_validator_inherited_stake_alpha", hotkey=t.M, netuid=1) == \
                t.EXPECTED[t.M]["inherited"] / 1e9
            assert exporter.snapshot.chain.block_hash == rig.state.finalized.hash
        finally:
            exporter.close()


def test_failing_over_to_another_chain_publishes_nothing_and_records_nothing(rig, tmp_path):
    """The endpoint of this chain goes bad; the only other one serves another chain (before, its
    "changes" were recorded and its values published): up 0 for wrong_chain, nothing recorded,
    until the endpoint of this chain answers again."""
    with SimNode(other_chain()) as other:
        db = str(tmp_path / "h.db")
        exporter = ExporterUnderTest([rig.proxy.url, other.url], scope=SCOPE, history_path=db, chain_timeout=2,
                                     refresh_timeout_seconds=10)
        try:
            assert exporter.refresh()
            before, rows = exporter.refresher.current(), history_rows(db)
            rig.state.commit_block()
            rig.proxy.corrupt = p.replace_result("chain_getFinalizedHead", None)
            try:
                bad = exporter.refresher.refresh_now(timeout=60)
            finally:
                rig.proxy.corrupt = None
            assert not bad.up and bad.data is before.data and history_rows(db) == rows
            assert series(exporter.scrape(), "bittensor_exporter_refresh_errors_total", reason="wrong_chain") == 1
            assert set(other.requests) == {"chain_getBlockHash"}
            assert exporter.refresh(), "this chain's endpoint again: published"
            assert exporter.snapshot.chain.block_hash == rig.state.finalized.hash
        finally:
            exporter.close()
