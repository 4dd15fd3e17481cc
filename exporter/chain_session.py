"""Own the chain connection and its event loop; offer one blocking ``read()``.

The SDK is asyncio-based and its connection lives on one event loop, so the
loop runs forever in its own daemon thread: the websocket stays open (and
answers pings) between refreshes, and the refresh thread stays synchronous.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Optional

from bittensor._transport.errors import MaxRetriesExceeded, RpcPolicyRejection, SubstrateRequestException
from bittensor._transport.interface import SubstrateConnection

from .chain_reader import ChainReader
from .config import ChainConfig, ScopeConfig
from .model import ChainRead
from .wire import RequestCounter, counting_connect_factory


class ReadError(Exception):
    """A refresh's chain read failed; ``reason`` is a bounded label for metrics."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
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
    def __init__(self, chain: ChainConfig, counter: RequestCounter):
        self._chain = chain
        self._counter = counter
        self._reader = ChainReader(chain.max_in_flight)
        self._conn: Optional[SubstrateConnection] = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="chain-io", daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> Optional[str]:
        return self._conn.current_endpoint if self._conn is not None else None

    async def _connection(self) -> SubstrateConnection:
        if self._conn is None:
            primary, *fallbacks = self._chain.endpoints
            conn = SubstrateConnection(
                primary,
                fallback_urls=fallbacks,
                response_timeout=self._chain.timeout_seconds,
                connect_factory=counting_connect_factory(self._counter),
            )
            try:
                await conn.initialize()
            except BaseException:
                await _close_quietly(conn)
                raise
            self._conn = conn
        return self._conn

    async def _read(self, scope: ScopeConfig) -> ChainRead:
        try:
            return await self._reader.read(await self._connection(), scope)
        except BaseException:
            # A failed or cancelled read may leave the session mid-page or given
            # up; start the next refresh on a fresh connection.
            conn, self._conn = self._conn, None
            if conn is not None:
                await _close_quietly(conn)
            raise

    def read(self, scope: ScopeConfig, timeout: float) -> ChainRead:
        """One consistent read at the finalized head; raises ReadError on any failure."""
        future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(self._read(scope), timeout), self._loop)
        try:
            return future.result()
        except Exception as error:  # noqa: BLE001 - every failure becomes a labelled ReadError
            raise ReadError(classify(error), _describe(error)) from error

    def close(self) -> None:
        async def shutdown() -> None:
            if self._conn is not None:
                await _close_quietly(self._conn)
                self._conn = None

        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
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
