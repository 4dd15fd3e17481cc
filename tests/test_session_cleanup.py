"""A failed chain read leaves nothing behind: the connection is closed in the background
without the refresh waiting on it, no task or connection piles up on the chain I/O loop
however many reads time out, and asyncio never reports an exception nobody retrieved."""

from __future__ import annotations

import gc
import logging
import threading
import time

import pytest
import structlog
from bittensor._transport.interface import SubstrateConnection

from exporter.config import ScopeConfig
from tests.test_faults import always

SCOPE = ScopeConfig(min_stake_weight=100)
DEADLINE = 1.0  # the refresh timeout: shorter than a response timeout, so it is what ends a stalled read;
# long enough that the healthy refreshes around the faults finish on a busy machine


def connections_alive(session) -> int:
    """SubstrateConnections still reachable after a full collection on the loop's own thread
    (where a finalized task would report an exception nobody retrieved)."""
    def count() -> int:
        gc.collect()
        return sum(isinstance(o, SubstrateConnection) for o in gc.get_objects())

    return session.run_on_loop(count)


def settle(session, at_most: int, timeout: float = 2.0) -> int:
    """Wait (polling the loop) until at most ``at_most`` tasks are left on it; the count.
    A background close takes milliseconds; 2 s is far below its 5 s limit."""
    deadline = time.monotonic() + timeout
    while (count := session.task_count()) > at_most and time.monotonic() < deadline:
        time.sleep(0.02)
    return count


@pytest.mark.parametrize("fault, rounds", [
    (("delay", 60), 3),  # the refresh's deadline cancels the read
    (("drop",), 3),  # the node drops the connection mid-read
    (("error", -32000, "too busy"), 3),  # an RPC error fails the read
])
def test_failed_reads_leave_no_tasks_connections_or_unretrieved_exceptions(
        tricky_node, exporter_factory, caplog, capfd, fault, rounds):
    exporter = exporter_factory(tricky_node, scope=SCOPE, chain_timeout=10, refresh_timeout_seconds=DEADLINE)
    session = exporter.session
    caplog.set_level(logging.WARNING)
    with structlog.testing.capture_logs() as logs:
        assert exporter.refresh()
        healthy = session.task_count()  # the open connection's own tasks
        tricky_node.fault = always("state_queryStorageAt", fault)
        for _ in range(rounds):
            started = time.monotonic()
            assert not exporter.refresh()
            assert time.monotonic() - started < DEADLINE + 0.5, "the failed connection's close is not waited for"
        assert settle(session, 0) == 0, "every task of the failed connections finished"
        assert connections_alive(session) == 0
        tricky_node.fault = None
        assert exporter.refresh()
        assert settle(session, healthy) <= healthy
        assert connections_alive(session) == 1
    # (the simulated node's own loop, in this process, may warn about writes to a dropped socket)
    ours = [r.getMessage() for r in caplog.records if r.name == "asyncio" and r.threadName != "simnode"]
    assert not ours and not [e for e in logs if e["event"].startswith("asyncio")], ours
    out, err = capfd.readouterr()
    assert "never retrieved" not in out + err and "Traceback" not in out + err


def test_the_sdk_giving_up_on_response_timeouts_leaves_nothing_behind(tricky_node, exporter_factory, capfd):
    # No healthy refresh first: with a 0.3 s response timeout, a busy machine may fail one.
    # Failing earlier (the metadata download timing out) is as good a failure for this test.
    tricky_node.fault = always("state_queryStorageAt", ("delay", 60))
    exporter = exporter_factory(tricky_node, scope=SCOPE, chain_timeout=0.3, refresh_timeout_seconds=5)
    session = exporter.session
    with structlog.testing.capture_logs() as logs:
        for _ in range(2):
            assert not exporter.refresh()
        assert settle(session, 0) == 0
        assert connections_alive(session) == 0
    assert not [e for e in logs if e["event"].startswith("asyncio")]
    out, err = capfd.readouterr()
    assert "never retrieved" not in out + err


def test_cancel_ends_a_stalled_read_at_once(tricky_node, exporter_factory):
    """``cancel()`` from another thread ends a read stalled for minutes; later reads fail at once."""
    exporter = exporter_factory(tricky_node, scope=SCOPE, chain_timeout=60, refresh_timeout_seconds=120)
    assert exporter.refresh()
    stalled = threading.Event()

    def fault(method, params):
        if method == "state_queryStorageAt":
            stalled.set()
            return ("delay", 300)
        return None

    tricky_node.fault = fault
    outcome = []
    refresh = threading.Thread(target=lambda: outcome.append(exporter.refresh()))
    refresh.start()
    assert stalled.wait(10)
    started = time.monotonic()
    exporter.session.cancel()
    refresh.join(5)
    assert not refresh.is_alive() and outcome == [False]
    assert time.monotonic() - started < 1
    assert settle(exporter.session, 0) == 0, "the cancelled read's connection is closed"
    requests = sum(tricky_node.requests.values())
    assert not exporter.refresh(), "a read after cancel() fails at once"
    assert sum(tricky_node.requests.values()) == requests, "without touching the chain"
    started = time.monotonic()
    exporter.session.close()
    assert time.monotonic() - started < 3
    assert not exporter.session._thread.is_alive()  # noqa: SLF001
