"""Own the chain connection and its event loop; offer one blocking ``read()``.

The SDK is asyncio-based and its connection lives on one event loop, so the
loop runs forever in its own daemon thread: the websocket stays open (and
answers pings) between refreshes, and the refresh thread stays synchronous.
Failover between endpoints is the pool's decision, made per refresh; the SDK
is given one endpoint at a time and few retries, so a bad endpoint fails fast.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from dataclasses import dataclass
from typing import Optional

from bittensor._transport.errors import MaxRetriesExceeded, RpcPolicyRejection, SubstrateRequestException
from bittensor._transport.interface import SubstrateConnection

from exporter.chain.reader import ChainReader
from exporter.config import ChainConfig, ScopeConfig
from exporter.chain.endpoints import Endpoint, EndpointPool
from exporter.snapshot.model import ChainRead
from exporter.chain.wire import RequestCounter, counting_connect_factory

# Response timeouts the SDK tolerates on one connection before reporting failure.
_SDK_RETRIES = 2


@dataclass(frozen=True)
class Attempt:
    """One try of one endpoint; ``reason`` None is a success."""

    endpoint: str  # the endpoint's label (scheme://host:port), safe for metrics and logs
    reason: Optional[str]
    seconds: float


class ReadError(Exception):
    """A refresh's chain read failed; ``reason`` is a bounded label for metrics."""

    def __init__(self, reason: str, message: str, attempts: tuple[Attempt, ...] = ()):
        self.reason = reason
        self.attempts = attempts
        super().__init__(message)


def classify(error: BaseException) -> str:
    """A bounded ``reason`` label for a failed read."""
    if isinstance(error, (TimeoutError, asyncio.TimeoutError, concurrent.futures.TimeoutError)):
        return "timeout"
    # MaxRetriesExceeded: every endpoint refused or dropped the connection;
    # a policy rejection (HTTP 429/403, close 1008) is the endpoint shutting us out.
    if isinstance(error, (ConnectionError, OSError, MaxRetriesExceeded, RpcPolicyRejection)):
        return "connection"
    if "ConnectionClosed" in type(error).__name__:
        return "connection"
    if isinstance(error, SubstrateRequestException):
        return "rpc_error"
    if isinstance(error, (ValueError, TypeError, KeyError, IndexError, OverflowError)):
        return "decode"
    return "internal"


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
        self._reader = ChainReader(chain.max_in_flight)
        self.pool = pool or EndpointPool(chain.endpoints)
        self._conn: Optional[SubstrateConnection] = None
        self._closing: set[asyncio.Future] = set()  # connections closing in the background
        self._conn_endpoint: Optional[Endpoint] = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="chain-io", daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> Optional[Endpoint]:
        """The endpoint the open connection talks to, if any."""
        return self._conn_endpoint if self._conn is not None else None

    async def _connection(self, endpoint: Endpoint) -> SubstrateConnection:
        if self._conn is not None and self._conn_endpoint is endpoint:
            return self._conn
        await self._drop_connection()
        conn = SubstrateConnection(
            endpoint.url,
            fallback_urls=[],
            max_retries=_SDK_RETRIES,
            response_timeout=self._chain.timeout_seconds,
            connect_factory=counting_connect_factory(self._counter),
        )
        try:
            await conn.initialize()
        except BaseException:
            await _close_quietly(conn)
            raise
        self._conn, self._conn_endpoint = conn, endpoint
        return conn

    async def _close_all(self) -> None:
        await self._drop_connection()
        # Connections still closing in the background were abandoned after a
        # failure; at shutdown there is nothing left to wait for on them.
        for task in self._closing:
            task.cancel()
        if self._closing:
            await asyncio.wait(set(self._closing), timeout=1)

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await _close_quietly(conn)

    def _abandon_connection(self) -> None:
        """Drop the connection without waiting for it to close.

        Closing a connection that failed mid-read can wait seconds on answers
        still in flight; the refresh (and a failover to the next endpoint)
        must not. The close finishes in the background on this loop.
        """
        conn, self._conn = self._conn, None
        if conn is not None:
            task = asyncio.ensure_future(_close_quietly(conn))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _read_from(self, endpoint: Endpoint, scope: ScopeConfig) -> ChainRead:
        try:
            return await self._reader.read(await self._connection(endpoint), scope)
        except BaseException:
            # A failed or cancelled read may leave the session mid-page or given
            # up; the next attempt starts on a fresh connection.
            self._abandon_connection()
            raise

    async def _read(self, scope: ScopeConfig, deadline: float, attempts: list[Attempt]) -> ChainRead:
        """Try endpoints in the pool's order until one gives a complete read; each try goes in ``attempts``."""
        last: Optional[BaseException] = None
        for endpoint in self.pool.order():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            started = time.monotonic()
            try:
                read = await asyncio.wait_for(self._read_from(endpoint, scope), remaining)
            except Exception as error:  # noqa: BLE001 - try the next endpoint
                last = error
                self.pool.failed(endpoint)
                attempts.append(Attempt(endpoint.label, classify(error), time.monotonic() - started))
                continue
            self.pool.succeeded(endpoint)
            attempts.append(Attempt(endpoint.label, None, time.monotonic() - started))
            return read
        raise last if last is not None else TimeoutError("no time left in this refresh to try an endpoint")

    def read(self, scope: ScopeConfig, timeout: float) -> tuple[ChainRead, tuple[Attempt, ...]]:
        """One consistent read at the finalized head, and the endpoint tries it took.

        Raises ReadError (carrying the tries) on any failure. The tries are
        appended on the chain I/O thread and handed over only once the read
        has finished, so no other thread sees the list while it changes.
        """
        deadline = time.monotonic() + timeout
        attempts: list[Attempt] = []
        future = asyncio.run_coroutine_threadsafe(self._read(scope, deadline, attempts), self._loop)
        try:
            read = future.result()
        except Exception as error:  # noqa: BLE001 - every failure becomes a labelled ReadError
            raise ReadError(classify(error), _describe(error), tuple(attempts)) from error
        return read, tuple(attempts)

    def close(self) -> None:
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._close_all(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)


async def _close_quietly(conn: SubstrateConnection) -> None:
    try:
        await asyncio.wait_for(conn.close(), 5)
    except Exception:  # noqa: BLE001 - closing a broken connection may fail; nothing to do
        pass


def _describe(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text if len(text) <= 300 else text[:300] + "..."
