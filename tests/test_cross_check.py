"""chain.cross_check: a second endpoint's word on each read's head.

An endpoint with this chain's genesis serving its own blocks (a fork, a node making its blocks
up, one lying consistently about its head's number) passes every check one endpoint's answers
allow; with two endpoints or more and ``cross_check``, the finalized hash at the height both
reached must be the same on both, or nothing is published (up 0, reason endpoints_disagree).
"""

from __future__ import annotations

import time

import pytest
from structlog.testing import capture_logs

from simnode import ChainState, SimNode
from simnode import proxy as p
from simnode.proxy import CorruptingProxy
from tests.conftest import write_tricky_chain
from tests.harness import ExporterUnderTest, series
from tests.test_endpoint_trust import SCOPE, history_rows
from tests.test_session_cleanup import connections_alive


def tricky(blocks: int, salt: str = "") -> ChainState:
    state = ChainState(salt=salt)
    write_tricky_chain(state)
    state.advance(blocks)
    return state


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
