"""Move bytes in and out of one client socket, plain or TLS, through the event loop.

Sockets are driven with the event loop's ``sock_recv``/``sock_sendall``
rather than asyncio transports: a transport copies what the kernel does not
take at once into its own buffer, 12 MB per slow scraper at mainnet scale.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct

from exporter.serving.http_head import ClientGone

RECV_BYTES = 16384  # one receive; a connection holds no buffer while it waits
TLS_RECORD_BATCH_BYTES = 256 * 1024  # plaintext encrypted at once: bounds a TLS connection's output buffer


class PlainChannel:
    """Bytes in and out of a non-blocking socket through the event loop, with no copies and no buffer."""

    tls = False

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket):
        self._loop = loop
        self.sock = sock

    async def handshake(self) -> None:
        pass

    async def recv(self) -> bytes:
        """Up to RECV_BYTES; b"" once the client closed its side."""
        return await self._loop.sock_recv(self.sock, RECV_BYTES)

    async def recv_raw(self) -> bytes:
        """Bytes as they arrive on the socket (after the last response: to be dropped)."""
        return await self._loop.sock_recv(self.sock, RECV_BYTES)

    async def send(self, data) -> None:
        await self._loop.sock_sendall(self.sock, data)

    async def finish(self) -> None:
        """No more output: a FIN after the last response byte."""
        _shutdown(self.sock)


class TLSChannel(PlainChannel):
    """TLS over the same socket with memory BIOs: the handshake is one more step under the head deadline."""

    tls = True

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, context: ssl.SSLContext):
        super().__init__(loop, sock)
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)

    async def _flush(self) -> None:
        data = self._outgoing.read()
        if data:
            await self._loop.sock_sendall(self.sock, data)

    async def _fill(self) -> bool:
        await self._flush()
        data = await self._loop.sock_recv(self.sock, RECV_BYTES)
        if not data:
            return False
        self._incoming.write(data)
        return True

    async def handshake(self) -> None:
        while True:
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                if not await self._fill():
                    raise ClientGone("closed during the TLS handshake") from None
        await self._flush()

    async def recv(self) -> bytes:
        while True:
            try:
                data = self._tls.read(RECV_BYTES)
            except ssl.SSLWantReadError:
                if not await self._fill():
                    return b""
                continue
            except ssl.SSLZeroReturnError:  # the client's close_notify
                return b""
            await self._flush()  # a read may answer the client (a key update)
            return data

    async def send(self, data) -> None:
        view = memoryview(data)
        for start in range(0, len(view), TLS_RECORD_BATCH_BYTES):
            self._tls.write(view[start:start + TLS_RECORD_BATCH_BYTES])
            await self._flush()

    async def finish(self) -> None:
        try:
            self._tls.unwrap()  # close_notify; the client's is not waited for
        except (ssl.SSLWantReadError, ssl.SSLError):
            pass
        await self._flush()
        _shutdown(self.sock)


def reset(sock: socket.socket) -> None:
    """Make the close a reset: what the kernel still holds for a client past its deadline is dropped,
    not sent on at the client's pace."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass


def _shutdown(sock: socket.socket) -> bool:
    """Half-close the sending side; False if the client is already gone."""
    try:
        sock.shutdown(socket.SHUT_WR)
        return True
    except OSError:
        return False
