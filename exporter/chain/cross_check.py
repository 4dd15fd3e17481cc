"""``chain.cross_check``: another endpoint's word on each read's head, over a connection of its own.

The read endpoint's head is compared with a second endpoint at the height both have reached
(``trust.agree_at_common_height``), while the read runs. The other endpoints are asked in the
pool's order, those that failed in this refresh last (so the endpoint just refused is not the
judge of the next one), until one answers; if none does, the read goes on unchecked (logged).
A witness that fails is counted as failed, like a read through it. Its connection stays open
from refresh to refresh, and becomes the reads' when the reads fail over to its endpoint.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable, Optional

import structlog
from bittensor._transport.interface import SubstrateConnection

from exporter.chain.endpoints import Endpoint, EndpointPool
from exporter.chain.trust import EndpointsDisagree, Witness, agree_at_common_height

log = structlog.get_logger("exporter.chain")


class CrossCheck:
    def __init__(self, pool: EndpointPool, timeout_seconds: float,
                 open_connection: Callable[[Endpoint], Awaitable[SubstrateConnection]],
                 close_in_background: Callable[[SubstrateConnection], None],
                 classify: Callable[[BaseException], str]):
        self._pool = pool
        self._timeout = timeout_seconds
        self._open = open_connection
        self._close_in_background = close_in_background
        self._classify = classify
        self._conn: Optional[SubstrateConnection] = None
        self._endpoint: Optional[Endpoint] = None

    def take(self, endpoint: Endpoint) -> Optional[SubstrateConnection]:
        """The connection to ``endpoint``, handed over to the reads (None if it has none)."""
        if self._conn is None or self._endpoint is not endpoint:
            return None
        conn, self._conn = self._conn, None
        return conn

    def detach(self) -> Optional[SubstrateConnection]:
        """The connection, no longer this object's (to close at shutdown)."""
        conn, self._conn = self._conn, None
        return conn

    async def _connection(self, endpoint: Endpoint) -> SubstrateConnection:
        if self._conn is not None and self._endpoint is endpoint:
            return self._conn
        self._abandon()
        conn = await self._open(endpoint)
        self._conn, self._endpoint = conn, endpoint
        return conn

    def _abandon(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._close_in_background(conn)

    def witness_for(self, reading: Endpoint, failed: set[str],
                    on_failure: Callable[[str, str, float], None]) -> Optional[Witness]:
        """The check of a read through ``reading`` (None: no other endpoint). ``failed``: the labels of
        the endpoints that failed in this refresh (asked last); ``on_failure(label, reason, seconds)``
        for each witness that did not answer."""
        others = [e for e in self._pool.order() if e is not reading]
        if not others:
            return None
        others.sort(key=lambda e: e.label in failed)  # stable: the pool's order otherwise

        async def witness(block: int, block_hash: str, source: Any) -> None:
            for other in others:
                started = time.monotonic()
                try:
                    conn = await asyncio.wait_for(self._connection(other), self._timeout)
                    await asyncio.wait_for(agree_at_common_height(block, block_hash, source, conn, other.label),
                                           self._timeout)
                    return
                except EndpointsDisagree:
                    raise
                except Exception as error:  # noqa: BLE001 - ask the next endpoint
                    self._abandon()
                    self._pool.failed(other)
                    reason = self._classify(error)
                    on_failure(other.label, reason, time.monotonic() - started)
                    log.warning("cross-check: endpoint did not answer", endpoint=other.label, reason=reason,
                                error=str(error)[:300])
            log.warning("cross-check skipped: no other endpoint answered", block=block, endpoint=reading.label)

        return witness
