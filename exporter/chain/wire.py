"""The exporter's websocket to the node: answers bounded in size, requests counted by method.

The SDK's transport takes an injectable websocket dial (``connect_factory``).
Its own dial accepts messages of up to 4 GiB, and one 500 MB answer took the
exporter to 1.8 GB; a node sends at most 15 MiB (substrate's
``--rpc-max-response-size``). So the exporter dials itself, with the largest
message it accepts set at the websocket (``chain.max_response_bytes``): a
longer one is refused at its header, before any of it is buffered, and fails
the read (``ResponseTooLarge``) instead of being asked for again.

Counting at the wire, below the SDK, sees every request the SDK makes on the
exporter's behalf (block headers, runtime versions, metadata) and not just
the ones the exporter asked for.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections import Counter
from typing import Optional, Union

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, PayloadTooBig
from websockets.frames import CloseCode

# Private to bittensor 11.x, hence the pinned SDK range (tests/test_sdk_names.py).
from bittensor._transport.errors import RpcPolicyRejection, SubstrateRequestException

from exporter.snapshot.read_rules import InvalidRead

# As long as the SDK's own dial waits for the websocket handshake.
HANDSHAKE_SECONDS = 10.0
# Bytes of outgoing frames buffered before a send waits (the SDK's own dial's setting).
WRITE_LIMIT = 2**16

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


class ResponseTooLarge(InvalidRead, SubstrateRequestException):
    """An answer longer than ``chain.max_response_bytes``: more than a node sends.

    An ``InvalidRead`` (refused, reason ``invalid``, the log names the rule and the
    setting) that the SDK's session also takes for its own kind of error: raised by
    the redial after the connection was closed, it makes the session give up and
    fail every request in flight with it, rather than send them again.
    """

    def __init__(self, detail: str):
        InvalidRead.__init__(self, "response_too_large", detail)
        self.payload = None  # as SubstrateRequestException's


class _Dial:
    """One SDK connection's dials: after an answer too large, every redial fails with it."""

    def __init__(self, counter: RequestCounter, max_response_bytes: int):
        self.counter = counter
        self.max_response_bytes = max_response_bytes
        self.too_large: Optional[ResponseTooLarge] = None

    async def __call__(self, url: str) -> "_CountingConnection":
        if self.too_large is not None:
            raise self.too_large
        return _CountingConnection(await dial(url, self.max_response_bytes), self)


class _BoundedConnection(ClientConnection):
    """A websocket that drops the connection the moment a message passes its size limit.

    websockets then sends a close frame and waits for the peer's; a peer still
    sending the long message answers only after sending all of it, and the read
    waited past the SDK's response timeout, which reported a timeout instead.
    """

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if isinstance(self.protocol.parser_exc, PayloadTooBig) and not self.transport.is_closing():
            self.transport.abort()  # connection_lost: recv() raises at once, the close (1009) as sent


async def dial(url: str, max_response_bytes: int):
    """A websocket to ``url`` accepting messages of at most ``max_response_bytes``.

    A refusal of the handshake becomes the SDK's error for it: HTTP 403 or 429 an
    ``RpcPolicyRejection`` (the endpoint shutting this client out: the SDK does not
    retry it), any other status a ``SubstrateRequestException``.
    """
    try:
        return await asyncio.wait_for(
            ws_connect(url, max_size=max_response_bytes, write_limit=WRITE_LIMIT, create_connection=_BoundedConnection),
            HANDSHAKE_SECONDS)
    except InvalidStatus as error:
        status = error.response.status_code
        if status in (403, 429):
            refusal = "rate limited this client" if status == 429 else "refused this client under its access policy"
            raise RpcPolicyRejection(f"the RPC endpoint {refusal} (HTTP {status})", status_code=status,
                                     retry_after=error.response.headers.get("Retry-After")) from error
        raise SubstrateRequestException(f"the RPC endpoint refused the websocket handshake (HTTP {status})") from error
    except asyncio.TimeoutError as error:
        raise TimeoutError(f"no websocket handshake within {HANDSHAKE_SECONDS:g}s") from error


class _CountingConnection:
    """A websocket connection that records every outgoing frame and names an answer too large."""

    def __init__(self, ws, dialed: _Dial):
        self._ws = ws
        self._dialed = dialed

    async def send(self, message) -> None:
        self._dialed.counter.record(message)
        await self._ws.send(message)

    async def recv(self):
        try:
            return await self._ws.recv()
        except ConnectionClosed as error:
            # websockets closes with 1009 (message too big) at the header of a longer message.
            if error.sent is None or error.sent.code != CloseCode.MESSAGE_TOO_BIG:
                raise
            limit = self._dialed.max_response_bytes
            self._dialed.too_large = ResponseTooLarge(
                f"an answer longer than chain.max_response_bytes ({limit / 2**20:g} MiB; a node sends at most "
                f"its --rpc-max-response-size, 15 MiB unless set): {error.sent.reason}")
            raise self._dialed.too_large from None

    async def close(self) -> None:
        await self._ws.close()


def counting_connect_factory(counter: RequestCounter, max_response_bytes: int = 15 * 2**20):
    """A ``connect_factory`` for one SDK ``SubstrateConnection``: answers bounded, requests counted."""
    return _Dial(counter, max_response_bytes)
