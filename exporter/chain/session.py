"""Own the chain connection and its event loop; offer one blocking ``read()``.

The SDK is asyncio-based and its connection lives on one event loop, so the
loop runs forever in its own daemon thread: the websocket stays open (and
answers pings) between refreshes, and the refresh thread stays synchronous.
Failover between endpoints is the pool's decision, made per refresh; the SDK
is given one endpoint at a time and few retries, so a bad endpoint fails fast,
and every endpoint is tried before a refresh fails (each try is given a share
of the refresh's time, so a stalled first endpoint cannot use it all up).

Every connection first shows it serves the configured chain (its genesis hash, before its
metadata: ``trust.check_genesis``); an endpoint of another chain fails with reason
``wrong_chain`` and is never read. With ``chain.cross_check``, a second endpoint gives its word
on each read's head over a connection of its own (``cross_check.CrossCheck``).

Stopping is bounded: ``cancel()`` fails the read in flight at once (the refresh
thread gets a ReadError and can publish and exit), and ``close()`` gives the
connection and every task left on the loop a fixed time to finish.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from typing import Any, Optional

import structlog

from bittensor._transport.interface import SubstrateConnection

from exporter.chain.closing import close_quietly
from exporter.chain.reader import ChainReader, EventRange
from exporter.chain.cross_check import CrossCheck
from exporter.chain.read_failure import Attempt, ReadError, classify, describe_error
from exporter.chain.trust import Witness, WrongChain, check_genesis
from exporter.config import ChainConfig, ScopeConfig
from exporter.chain.endpoints import Endpoint, EndpointPool
from exporter.snapshot.model import ChainRead
from exporter.chain.wire import RequestCounter, counting_connect_factory

log = structlog.get_logger("exporter.chain")

# Response timeouts the SDK tolerates on one connection before reporting failure.
_SDK_RETRIES = 2
# Seconds a connection gets to close: in the background after a failure, and at shutdown.
_CLOSE_SECONDS = 5.0
_SHUTDOWN_CLOSE_SECONDS = 2.0
# Beyond its deadline, how long the refresh thread waits for a read that did not
# stop by itself (a try that ignored its cancellation) before giving up on it.
_OVERRUN_SECONDS = 2.0


class ChainSession:
    def __init__(
        self,
        chain: ChainConfig,
        counter: RequestCounter,
        *,
        pool: Optional[EndpointPool] = None,
    ):
        self._chain = chain
        self._counter = counter
        self._reader = ChainReader(chain.max_in_flight, chain.max_scan_bytes)
        self.pool = pool or EndpointPool(chain.endpoints)
        self._conn: Optional[SubstrateConnection] = None
        self._closing: set[asyncio.Future] = set()  # connections closing in the background
        self._conn_endpoint: Optional[Endpoint] = None
        self._lock = threading.Lock()  # guards _in_flight between the refresh thread and cancel()
        self._in_flight: Optional[concurrent.futures.Future] = None
        self._cancelled = threading.Event()
        self._closed = False
        self._cross_check = CrossCheck(self.pool, chain.timeout_seconds, self._open, self._close_in_background, classify)
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(_log_loop_exception)
        self._thread = threading.Thread(target=self._loop.run_forever, name="chain-io", daemon=True)
        self._thread.start()

    @property
    def gate(self):
        """The reads' ``ReadGate``: the last good read every later one is judged against."""
        return self._reader.gate

    @property
    def endpoint(self) -> Optional[Endpoint]:
        """The endpoint the open connection talks to, if any."""
        return self._conn_endpoint if self._conn is not None else None

    async def _connection(self, endpoint: Endpoint) -> SubstrateConnection:
        if self._conn is not None and self._conn_endpoint is endpoint:
            return self._conn
        self._abandon_connection()  # another endpoint's: closed in the background, never waited for
        conn = self._cross_check.take(endpoint)  # the cross-check's connection becomes the reads'
        if conn is None:
            conn = await self._open(endpoint)
        self._conn, self._conn_endpoint = conn, endpoint
        return conn

    async def _open(self, endpoint: Endpoint) -> SubstrateConnection:
        """A connection to ``endpoint`` once it has shown it serves the configured chain: its
        genesis hash is asked first, so another chain's endpoint is never read (not even its metadata)."""
        conn = SubstrateConnection(
            endpoint.url,
            fallback_urls=[],
            max_retries=_SDK_RETRIES,
            response_timeout=self._chain.timeout_seconds,
            connect_factory=counting_connect_factory(self._counter, self._chain.max_response_bytes),
        )
        try:
            await check_genesis(conn, self._chain.genesis_hash, endpoint.label)
            await conn.initialize()
        except BaseException as error:
            self._close_in_background(conn)
            if isinstance(error, WrongChain):
                log.warning("endpoint refused: it serves another chain", endpoint=endpoint.label, error=str(error),
                            hint="chain.genesis_hash names the chain to read; remove this endpoint or point it at that chain")
            raise
        return conn

    def _witness_for(self, reading: Endpoint, attempts: list[Attempt]) -> Optional[Witness]:
        """With ``chain.cross_check``: another endpoint's word on the head read through ``reading``."""
        if not self._chain.cross_check:
            return None
        failed = {a.endpoint for a in attempts if a.reason is not None}
        return self._cross_check.witness_for(
            reading, failed, lambda label, reason, seconds: attempts.append(Attempt(label, reason, seconds)))

    async def _close_all(self, seconds: float) -> None:
        """Close the connection, then cancel whatever is left on the loop; ``seconds`` in all."""
        deadline = self._loop.time() + seconds
        conn, self._conn = self._conn, None
        if conn is not None:
            await close_quietly(conn, max(0.1, seconds / 2))
        witness = self._cross_check.detach()
        if witness is not None:
            await close_quietly(witness, max(0.1, deadline - self._loop.time()) / 2)
        # Connections still closing in the background were abandoned after a
        # failure, and the SDK may have tasks of its own: at shutdown there is
        # nothing left to wait for on any of them.
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        if others:
            await asyncio.wait(others, timeout=max(0.1, deadline - self._loop.time()))
        for task in others:
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: never "Task exception was never retrieved"

    def _abandon_connection(self) -> None:
        """Drop the connection without waiting for it to close.

        Closing a connection that failed mid-read can wait seconds on answers
        still in flight; the refresh (and a failover to the next endpoint)
        must not. The close finishes in the background on this loop.
        """
        conn, self._conn = self._conn, None
        if conn is not None:
            self._close_in_background(conn)

    def _close_in_background(self, conn: SubstrateConnection) -> None:
        task = asyncio.ensure_future(close_quietly(conn, _CLOSE_SECONDS))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _read_from(self, endpoint: Endpoint, scope: ScopeConfig, events: Optional[EventRange],
                         at_block: Optional[int], attempts: list[Attempt]) -> ChainRead:
        try:
            conn = await self._connection(endpoint)
            return await self._reader.read(conn, scope, events, at_block, self._witness_for(endpoint, attempts))
        except BaseException:
            # A failed or cancelled read may leave the session mid-page or given
            # up; the next attempt starts on a fresh connection.
            self._abandon_connection()
            raise

    async def _read(self, scope: ScopeConfig, deadline: float, attempts: list[Attempt],
                    events: Optional[EventRange] = None, at_block: Optional[int] = None) -> ChainRead:
        """Try every endpoint, in the pool's order, until one gives a complete read;
        each try goes in ``attempts``."""
        last: Optional[BaseException] = None
        order = self.pool.order()
        for index, endpoint in enumerate(order):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            started = time.monotonic()
            budget = attempt_budget(remaining, len(order) - index, self._chain.timeout_seconds)
            try:
                read = await asyncio.wait_for(self._read_from(endpoint, scope, events, at_block, attempts), budget)
            except Exception as error:  # noqa: BLE001 - try the next endpoint
                if isinstance(error, TimeoutError) and not str(error):
                    error = TimeoutError(f"no complete read from {endpoint.label} within {budget:.3g}s")
                last = error
                self.pool.failed(endpoint)
                attempts.append(Attempt(endpoint.label, classify(error), time.monotonic() - started))
                continue
            self.pool.succeeded(endpoint)
            attempts.append(Attempt(endpoint.label, None, time.monotonic() - started))
            return read
        raise last if last is not None else TimeoutError("no time left in this refresh to try an endpoint")

    def read(self, scope: ScopeConfig, timeout: float, events: Optional[EventRange] = None,
             at_block: Optional[int] = None) -> tuple[ChainRead, tuple[Attempt, ...]]:
        """One consistent read at the finalized head (with ``events``: and the chain's events since
        a block), and the endpoint tries it took.

        Raises ReadError (carrying the tries) on any failure. The tries are
        appended on the chain I/O thread and handed over only once the read
        has finished, so no other thread sees the list while it changes.
        """
        deadline = time.monotonic() + timeout
        attempts: list[Attempt] = []
        with self._lock:
            if self._cancelled.is_set():
                raise ReadError("timeout", "not read: the exporter is stopping")
            future = asyncio.run_coroutine_threadsafe(self._read(scope, deadline, attempts, events, at_block), self._loop)
            self._in_flight = future
        try:
            read = future.result(timeout + _OVERRUN_SECONDS)
        except concurrent.futures.CancelledError:
            # The tries may still be settling on the loop, so none are handed over.
            if self._cancelled.is_set():
                raise ReadError("timeout", "read cancelled: the exporter is stopping") from None
            raise ReadError("internal", "read cancelled") from None
        except Exception as error:  # noqa: BLE001 - every failure becomes a labelled ReadError
            if not future.done():  # this wait timed out, not the read: a try ignored its cancellation
                future.cancel()
                raise ReadError("timeout", f"the read did not stop at its {timeout:g}s deadline") from None
            raise ReadError(classify(error), describe_error(error), tuple(attempts)) from error
        finally:
            with self._lock:
                self._in_flight = None
        return read, tuple(attempts)

    def finalized_head(self, timeout: float) -> str:
        """The finalized head's hash (one request): what a refresh that follows the chain waits on."""
        return self._ask(lambda conn: conn.get_chain_finalised_head(), timeout)

    def finalized_block(self, timeout: float) -> int:
        """The finalized head's number (a backfill's upper bound); nothing else is read."""

        async def number(conn: SubstrateConnection) -> int:
            return int(await conn.get_block_number(await conn.get_chain_finalised_head()))

        return self._ask(number, timeout)

    def _ask(self, question, timeout: float) -> Any:
        """``question(connection)`` at the endpoint reads go to first. Raises ReadError on any
        failure, and at once when the exporter is stopping (``cancel()`` also ends an ask in flight)."""

        async def ask() -> Any:
            endpoint = self.pool.order()[0]
            try:
                conn = await self._connection(endpoint)
            except WrongChain:
                self.pool.failed(endpoint)  # behind the others until its backoff ends: not asked every poll
                raise
            try:
                return await question(conn)
            except BaseException:
                self._abandon_connection()  # the next ask (or read) starts on a fresh connection
                raise

        with self._lock:
            if self._cancelled.is_set():
                raise ReadError("timeout", "not asked: the exporter is stopping")
            future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(ask(), timeout), self._loop)
            self._in_flight = future
        try:
            return future.result(timeout + _OVERRUN_SECONDS)
        except Exception as error:  # noqa: BLE001 - the caller asks again later
            future.cancel()
            raise ReadError(classify(error), describe_error(error)) from None
        finally:
            with self._lock:
                self._in_flight = None

    def cancel(self) -> None:
        """Fail the read in flight now, and every later one at once (the exporter is stopping).

        Safe from any thread; the refresh thread's ``read()`` returns within
        moments with a ReadError, however stalled the endpoint.
        """
        with self._lock:
            self._cancelled.set()
            future = self._in_flight
        if future is not None:
            future.cancel()

    def close(self, timeout: float = _SHUTDOWN_CLOSE_SECONDS + 1) -> None:
        """Cancel any read, close the connection and stop the loop, within about ``timeout`` seconds.

        Safe to call more than once and from any thread but the loop's own.
        """
        self.cancel()
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + timeout
        closing = min(_SHUTDOWN_CLOSE_SECONDS, timeout * 0.7)
        if self._thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(self._close_all(closing), self._loop).result(timeout=closing + 0.5)
            except Exception as error:  # noqa: BLE001 - shutting down: give up on a close that does not finish
                log.warning("chain connection not closed cleanly", error=describe_error(error))
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(max(0.1, deadline - time.monotonic()))
        if not self._thread.is_alive():
            self._loop.close()

    def task_count(self) -> int:
        """Tasks alive on the chain I/O loop (for tests: nothing may pile up after failures)."""

        async def count() -> int:
            return len([t for t in asyncio.all_tasks() if t is not asyncio.current_task()])

        return asyncio.run_coroutine_threadsafe(count(), self._loop).result(timeout=5)

    def run_on_loop(self, function, timeout: float = 5) -> Any:
        """Call ``function()`` on the chain I/O thread and return its result (tests, diagnostics)."""

        async def call() -> Any:
            return function()

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(timeout=timeout)


def attempt_budget(remaining: float, endpoints_left: int, response_timeout: float) -> float:
    """Seconds one try may take so the endpoints after it are still tried in time.

    Each later endpoint is left one response timeout (enough to find a dead or
    stalled one out), but never less than an equal share of what remains; the
    last endpoint gets everything left.
    """
    if endpoints_left <= 1:
        return remaining
    return max(remaining / endpoints_left, remaining - (endpoints_left - 1) * response_timeout)


def _log_loop_exception(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """asyncio's reports (e.g. "Task exception was never retrieved") as one structured log line."""
    error = context.get("exception")
    where = context.get("task") or context.get("future") or context.get("handle")
    log.error(
        "asyncio: " + str(context.get("message") or "unhandled exception in the chain I/O loop"),
        where=describe_error(repr(where)) if where is not None else None,
        exc_info=error if isinstance(error, BaseException) else None,
    )
