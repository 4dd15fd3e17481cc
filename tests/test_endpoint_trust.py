"""No endpoint can poison the exporter: a forged head, a forged clock, another chain, a forked endpoint.

Each mode goes through a corrupting proxy (or a node of another chain) in front of an honest
simulated node, read by the real SDK over the wire, with history on. For each: nothing of it is
published with up=1 or recorded in history, the last good read stays the reference later reads
are judged against, and the next refresh through an honest endpoint publishes the chain's head.
"""

from __future__ import annotations

import sqlite3
import time
import tracemalloc
from dataclasses import dataclass
from typing import Callable, Optional

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
from tests.test_session_cleanup import connections_alive

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
    exporter = exporter_of(rig)
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


def exporter_of(rig: Rig) -> ExporterUnderTest:
    return rig.exporter


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


def test_without_history_a_consistent_liar_is_caught_by_the_cross_check(tmp_path):
    """Nothing to judge the first head against but the chain's u32: the cross-check's second endpoint is."""
    with SimNode(tricky(4)) as node, CorruptingProxy(node.url) as liar:
        head = node.state.finalized.number
        liar.corrupt = p.combine(
            p.header_number(hex(head + 1000)),
            p.on("chain_getBlockHash", lambda params, result: node.state.finalized.hash if params == [head + 1000] else result),
        )
        exporter = ExporterUnderTest([liar.url, node.url], scope=SCOPE, chain_timeout=2, refresh_timeout_seconds=10,
                                     cross_check=True)
        try:
            assert exporter.refresh(), "the honest endpoint, checked against the liar, is published"
            assert exporter.snapshot.chain.block == head
            s = exporter.scrape()
            label = exporter.session.pool.endpoints[0].label
            assert series(s, "bittensor_exporter_endpoint_errors_total", endpoint=label, reason="endpoints_disagree") == 1
        finally:
            exporter.close()


# -- a forged clock --------------------------------------------------------------------------------


def test_a_timestamp_of_u64_max_is_held_back(rig):
    refusal, = poisoned(rig, rig.now_value(U64_MAX), "timestamp_ahead_of_clock")
    assert refusal["reason"] == "invalid"


def test_a_timestamp_just_past_the_clocks_margin_is_held_back_and_one_within_it_is_not(rig):
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


# -- two endpoints naming different blocks ----------------------------------------------------------


def settled_connections(session, at_most) -> int:
    """The SubstrateConnections alive once those closing in the background are closed (polled up to 8 s)."""
    deadline = time.monotonic() + 8
    last = connections_alive(session)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        alive = connections_alive(session)
        if (at_most is not None and alive <= at_most) or (at_most is None and alive == last and session.task_count() <= 3):
            return alive
        last = alive
    return last


@pytest.fixture
def cross_checked():
    made = []

    def make(urls, db):
        exporter = ExporterUnderTest(urls, scope=SCOPE, history_path=db, chain_timeout=2, refresh_timeout_seconds=10,
                                     cross_check=True)
        made.append(exporter)
        return exporter

    yield make
    for exporter in made:
        exporter.close()


def test_cross_check_withholds_a_read_two_endpoints_disagree_on(tmp_path, cross_checked):
    """A fork (or a node making its blocks up): this chain's genesis and storage, other blocks, which
    no single read can tell from the chain."""
    honest, forked = tricky(4), tricky(4, "fork")
    assert forked.genesis.hash == honest.genesis.hash and forked.head.hash != honest.head.hash
    with SimNode(forked) as fork, SimNode(honest) as node:
        db = str(tmp_path / "h.db")
        exporter = cross_checked([fork.url, node.url], db)
        labels = [e.label for e in exporter.session.pool.endpoints]
        with capture_logs() as logs:
            assert not exporter.refresh()
        assert exporter.snapshot is None and history_rows(db).get("events", 0) == 0
        s = exporter.scrape()
        assert series(s, "bittensor_exporter_up") == 0
        assert series(s, "bittensor_exporter_refresh_errors_total", reason="endpoints_disagree") == 1
        for label in labels:  # each endpoint was read, and the other disagreed
            assert series(s, "bittensor_exporter_endpoint_errors_total", endpoint=label, reason="endpoints_disagree") == 1
        failed = [e for e in logs if e.get("reason") == "endpoints_disagree"]
        assert len(failed) == 1 and "at finalized height" in failed[0]["error"], logs
        # A refused read's connection closes in the background (within 5 s); the count is the
        # process's (other tests' objects too), so it is compared with itself after one refresh.
        baseline = settled_connections(exporter.session, None)
        for _ in range(5):
            assert not exporter.refresh()
        alive = settled_connections(exporter.session, baseline)
        assert alive <= baseline, f"no connection piles up, refresh after refresh: {alive} > {baseline}"
        exporter.close()


def test_cross_check_with_a_third_endpoint_publishes_what_two_agree_on(tmp_path, cross_checked):
    """The forked endpoint first: refused (the next endpoint disagrees); the next one is checked
    against the third, not against the one that just failed, and published."""
    honest = tricky(4)
    with SimNode(tricky(4, "fork")) as fork, SimNode(honest) as first, SimNode(honest) as second:
        exporter = cross_checked([fork.url, first.url, second.url], str(tmp_path / "h.db"))
        labels = [e.label for e in exporter.session.pool.endpoints]
        assert exporter.refresh()
        assert exporter.snapshot.chain.block_hash == honest.finalized.hash
        s = exporter.scrape()
        assert series(s, "bittensor_exporter_endpoint_errors_total", endpoint=labels[0], reason="endpoints_disagree") == 1
        assert series(s, "bittensor_exporter_endpoint_up", endpoint=labels[1]) == 1
        assert sum(second.requests.values()) > 0, "the third endpoint was the witness"
        exporter.close()


def tricky(blocks: int, salt: str = "") -> ChainState:  # noqa: E302
    state = ChainState(salt=salt)
    write_tricky_chain(state)
    state.advance(blocks)
    return state


@pytest.mark.parametrize("witness_salt, agree", [("", True), ("fork", False)])
def test_cross_check_against_a_witness_that_is_behind(tmp_path, cross_checked, witness_salt, agree):
    """The witness's head is older: the reading endpoint's hash at the witness's height is compared."""
    with SimNode(tricky(5)) as reading, SimNode(tricky(2, witness_salt)) as behind:
        exporter = cross_checked([reading.url, behind.url], str(tmp_path / "h.db"))
        assert exporter.refresh() is agree
        assert reading.requests["chain_getBlockHash"] >= 2, "asked its hash at the witness's height"
        if not agree:
            assert series(exporter.scrape(), "bittensor_exporter_refresh_errors_total", reason="endpoints_disagree") == 1
        exporter.close()
