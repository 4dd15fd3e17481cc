"""Count JSON-RPC requests as they leave on the websocket, by method.

Counting at the wire, below the SDK, sees every request the SDK makes on the
exporter's behalf (block headers, runtime versions, metadata) and not just
the ones the exporter asked for.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from typing import Union

# The SDK's transport takes an injectable websocket dial; its default keeps the
# SDK's handling of rate-limit and policy refusals, so wrap it rather than
# replace it. Private to bittensor 11.x, hence the pinned SDK range.
from bittensor._transport.rpc import _default_connect

_METHOD = re.compile(r'"method"\s*:\s*"([A-Za-z0-9_]+)"')


class RequestCounter:
    """Thread-safe running totals of JSON-RPC requests sent, by method."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def record(self, frame: Union[str, bytes]) -> None:
        text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
        # A single request names its method near the start (the SDK writes it
        # before the params, which can be 100 kB of keys); a batch is an array
        # and needs a full scan.
        head = text if text.startswith("[") else text[:200]
        methods = _METHOD.findall(head)
        with self._lock:
            self._counts.update(methods)

    def totals(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())


class _CountingConnection:
    """A websocket connection that records every outgoing frame."""

    def __init__(self, ws, counter: RequestCounter):
        self._ws = ws
        self._counter = counter

    async def send(self, message) -> None:
        self._counter.record(message)
        await self._ws.send(message)

    async def recv(self):
        return await self._ws.recv()

    async def close(self) -> None:
        await self._ws.close()


def counting_connect_factory(counter: RequestCounter):
    """A ``connect_factory`` for the SDK's ``SubstrateConnection`` that counts requests."""

    async def connect(url: str) -> _CountingConnection:
        return _CountingConnection(await _default_connect(url), counter)

    return connect
