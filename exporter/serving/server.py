"""Serve ``/metrics``, ``/healthz`` and a landing page; never touch the chain.

A scrape sends the bytes the last refresh prepared plus the exporter's small
live self-metrics, so it costs about as much as sending a static file.

One asyncio event loop on its own thread serves every connection, so an idle
or slow connection costs a socket and a few KiB, not a thread or a slot that
real scrapes wait for. Hardening:

- a deadline for the whole request head (``request_timeout``, 10 s): from
  accept, TLS handshake included, and from the end of the previous response
  on a kept-alive connection; past it the connection is closed, however
  steadily the client trickles bytes;
- bounded heads: a request line or header line over 64 KiB answers 414 or
  431, more than 100 headers or 64 KiB of them 431; request bodies are never
  read (a request announcing one is answered, then the connection closed);
- a response goes out straight from the publication's bytes (no copy, no
  per-connection buffer; TLS encrypts 256 KiB at a time) within
  ``response_timeout`` (60 s); a client past a deadline is reset, so the
  kernel drops what it still held for it;
- at most ``max_connections`` (1,024) connections at once, beyond that an
  immediate 503 (plain HTTP) or close (TLS);
- GET and HEAD only; optional TLS and basic auth from an exporter-toolkit web
  config file; bcrypt checks and the events API's SQLite reads run on a small
  thread pool, never on the event loop;
- a client's error (garbage, a hang-up mid-response, a failed handshake) is
  at most one debug log line, never a traceback.

Sockets are driven with the event loop's ``sock_recv``/``sock_sendall``
rather than asyncio transports: a transport copies what the kernel does not
take at once into its own buffer, 12 MB per slow scraper at mainnet scale.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import socket
import ssl
import struct
import threading
import time
from http import HTTPStatus
from typing import Callable, Optional

import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.process_collector import ProcessCollector

from exporter import __version__
from exporter.serving.publication import Publication
from exporter.serving.web_config import BasicAuth, WebConfig

log = structlog.get_logger("exporter.http")

REQUEST_TIMEOUT_SECONDS = 10  # the whole request head, from accept (TLS handshake included) or the last response
RESPONSE_TIMEOUT_SECONDS = 60  # the whole response: a client that stops reading is cut off
MAX_CONNECTIONS = 1024
MAX_LINE_BYTES = 65536  # request line (414) or one header line (431), as http.server
MAX_HEADERS = 100  # header lines (431), as http.server
MAX_HEADER_BYTES = 65536  # all header lines together (431)
RECV_BYTES = 16384  # one receive; a connection holds no buffer while it waits
TLS_RECORD_BATCH_BYTES = 256 * 1024  # plaintext encrypted at once: bounds a TLS connection's output buffer
COALESCE_BYTES = 65536  # body chunks below this are joined with their neighbours into one send
LINGER_SECONDS = 1.0  # after an error answer: how long unread input is drained before closing
LINGER_BYTES = 1 << 18
LISTEN_BACKLOG = 1024
IO_THREADS = 2  # bcrypt checks and events API queries, off the event loop
FD_RESERVE = 128  # file descriptors left to the rest of the process (chain connections, SQLite, logs)
LIVE_METRICS_MAX_AGE_SECONDS = 1.0

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SERVER = f"bittensor-validator-exporter/{__version__}"

LANDING_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Bittensor validator exporter</title></head>
<body>
<h1>Bittensor validator exporter</h1>
<p>Version {version}. Own, inherited and root stake, childkey takes and parent/child
relationships of Bittensor validators, refreshed on an interval from one finalized block.</p>
<ul>
<li><a href="/metrics">/metrics</a>: Prometheus metrics</li>
<li><a href="/healthz">/healthz</a>: 200 while the last refresh is fresh, 503 otherwise</li>
<li><a href="/api/v1/events">/api/v1/events</a>: recorded changes (JSON; hotkey, netuid, kind, since, until, limit, cursor)</li>
</ul>
</body></html>
"""

_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class ProcessMetrics:
    """The process's own CPU, memory and file descriptors, read live at scrape time.

    Rendered at most once a second: a burst of concurrent scrapes shares one
    reading. The cache holds immutable bytes; nothing else is shared with the
    refresh thread.
    """

    def __init__(self, max_age_seconds: float = LIVE_METRICS_MAX_AGE_SECONDS):
        self._registry = CollectorRegistry()
        ProcessCollector(registry=self._registry)
        self._max_age = max_age_seconds
        self._cached: tuple[float, bytes] = (float("-inf"), b"")
        self._lock = threading.Lock()

    def __call__(self) -> bytes:
        with self._lock:
            rendered_at, body = self._cached
            now = time.monotonic()
            if now - rendered_at >= self._max_age:
                body = generate_latest(self._registry)
                self._cached = (now, body)
            return body


class MetricsSource:
    """What the HTTP side reads: the current publication, live process metrics, the events API."""

    def __init__(
        self,
        current: Callable[[], Publication],
        *,
        clock: Callable[[], float] = time.time,
        live: Callable[[], bytes] = lambda: b"",
        events: Optional[Callable[[str], tuple[int, bytes]]] = None,
    ):
        self.current = current  # one reference read per request
        self.clock = clock
        self.live = live
        # query string -> (status, JSON body); None when the history API is disabled. Runs on a
        # worker thread (it reads SQLite), never on the event loop.
        self.events = events


def _accepts_gzip(header: Optional[str]) -> bool:
    for part in (header or "").split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() == "gzip":
            return params.replace(" ", "").lower() not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


class _BadRequest(Exception):
    """The request head cannot be served: answer ``status`` and close."""

    def __init__(self, status: HTTPStatus, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _ClientGone(Exception):
    """The client closed its side before a complete request head."""


class _Request:
    __slots__ = ("method", "target", "version", "headers")

    def __init__(self, method: str, target: str, version: tuple[int, int], headers: dict[str, str]):
        self.method, self.target, self.version, self.headers = method, target, version, headers

    @property
    def keep_alive(self) -> bool:
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        if self.version >= (1, 1):
            return "close" not in tokens
        return "keep-alive" in tokens

    @property
    def has_body(self) -> bool:
        length = self.headers.get("content-length", "0").strip()
        return "transfer-encoding" in self.headers or length not in ("", "0")


class _PlainChannel:
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


class _TLSChannel(_PlainChannel):
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
                    raise _ClientGone("closed during the TLS handshake") from None
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


def _reset(sock: socket.socket) -> None:
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


def _parse_request_line(line: bytes) -> tuple[str, str, tuple[int, int]]:
    parts = line.decode("latin-1").split()
    if len(parts) != 3:
        raise _BadRequest(HTTPStatus.BAD_REQUEST, "bad request line")
    method, target, version = parts
    if not version.startswith("HTTP/"):
        raise _BadRequest(HTTPStatus.BAD_REQUEST, "bad request line")
    major, dot, minor = version[5:].partition(".")
    if not (dot and major.isdigit() and minor.isdigit() and len(major) <= 3 and len(minor) <= 3):
        raise _BadRequest(HTTPStatus.BAD_REQUEST, "bad HTTP version")
    if int(major) != 1:
        raise _BadRequest(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "HTTP/1.x only")
    return method, target, (int(major), int(minor))


async def _read_head(channel: _PlainChannel, buffer: bytearray) -> _Request:
    """One request head from ``buffer`` (what the connection received beyond the last request) and the channel.

    Bounded: the buffer never holds more than a line limit plus one receive
    beyond what the limits allow; the bytes after the head stay in ``buffer``.
    """
    position = scanned = 0  # the next line starts at ``position``; no newline in buffer[position:scanned]
    request_line: Optional[tuple[str, str, tuple[int, int]]] = None
    headers: dict[str, str] = {}
    count = total = 0
    skipped_blank = False
    while True:
        newline = buffer.find(b"\n", max(position, scanned))
        if newline < 0:
            scanned = len(buffer)  # a line trickled a byte at a time is scanned once, not once per byte
            pending = len(buffer) - position
            if request_line is None and pending > MAX_LINE_BYTES:
                raise _BadRequest(HTTPStatus.REQUEST_URI_TOO_LONG, "request line too long")
            if request_line is not None and (pending > MAX_LINE_BYTES or total + pending > MAX_HEADER_BYTES):
                raise _BadRequest(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "header line or headers too large")
            data = await channel.recv()
            if not data:
                raise _ClientGone("closed before a complete request head" if buffer else "closed")
            buffer += data
            continue
        line = bytes(buffer[position:newline + 1])
        position = newline + 1
        if request_line is None:
            if len(line) > MAX_LINE_BYTES + 2:
                raise _BadRequest(HTTPStatus.REQUEST_URI_TOO_LONG, "request line too long")
            if line in (b"\r\n", b"\n") and not skipped_blank:  # one empty line before a request (RFC 9112 2.2)
                skipped_blank = True
                continue
            request_line = _parse_request_line(line)
            continue
        if line in (b"\r\n", b"\n"):
            del buffer[:position]
            return _Request(*request_line, headers)
        count += 1
        total += len(line)
        if count > MAX_HEADERS or total > MAX_HEADER_BYTES or len(line) > MAX_LINE_BYTES + 2:
            raise _BadRequest(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "too many or too large headers")
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon or not name or not _TOKEN_CHARS.issuperset(name):  # also refuses obsolete line folding
            raise _BadRequest(HTTPStatus.BAD_REQUEST, "bad header line")
        name, value = name.lower(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value


class _Clock:
    """The Date header, formatted once a second."""

    def __init__(self):
        self._second = -1
        self._text = ""

    def date(self) -> str:
        now = time.time()
        if int(now) != self._second:
            self._second = int(now)
            self._text = email.utils.formatdate(now, usegmt=True)
        return self._text


class MetricsServer:
    """An HTTP(S) server on ``host:port`` (``port`` 0: a free port), served by one event-loop thread.

    The socket is bound here (an unusable address raises OSError at once);
    ``start`` serves, ``stop`` closes every connection and releases the port.
    ``request_timeout`` is the deadline for a whole request head.
    """

    def __init__(self, host: str, port: int, source: MetricsSource, web: WebConfig = WebConfig(),
                 max_connections: int = MAX_CONNECTIONS, request_timeout: float = REQUEST_TIMEOUT_SECONDS,
                 response_timeout: float = RESPONSE_TIMEOUT_SECONDS):
        self._source = source
        self._web = web
        self._auth = BasicAuth(web.users)
        self._max_connections = min(max_connections, _descriptor_budget())
        self._head_timeout = request_timeout
        self._response_timeout = response_timeout
        self._extra_headers = "".join(f"{name}: {value}\r\n" for name, value in web.headers.items())
        self._clock = _Clock()
        self._socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._socket.bind((host, port))
            self._socket.listen(LISTEN_BACKLOG)
            self._socket.setblocking(False)
        except OSError:
            self._socket.close()
            raise
        self._open = 0  # connections accepted and not yet closed (event-loop thread only)
        self._connections: dict[asyncio.Task, socket.socket] = {}
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stopping: Optional[asyncio.Event] = None
        self._pool: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self._thread: Optional[threading.Thread] = None
        self._lifecycle = threading.Lock()
        self._closed = False
        self._last_accept_error = float("-inf")

    @property
    def port(self) -> int:
        return self._socket.getsockname()[1]

    def start(self) -> None:
        with self._lifecycle:
            if self._thread is not None or self._closed:
                return
            self._pool = concurrent.futures.ThreadPoolExecutor(IO_THREADS, thread_name_prefix="http-io")
            running = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(running,), name="http", daemon=True)
            self._thread.start()
            running.wait(timeout=10)

    def stop(self) -> None:
        """Stop serving, close every connection and release the port; prompt, and safe to call again."""
        with self._lifecycle:
            if self._closed:
                return
            self._closed = True
            if self._thread is not None:
                loop, stopping = self._loop, self._stopping
                if loop is not None and stopping is not None:
                    try:
                        loop.call_soon_threadsafe(stopping.set)
                    except RuntimeError:  # the loop already ended
                        pass
                self._thread.join(timeout=5)
                self._thread = None
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)  # an events query in SQLite finishes alone
            self._socket.close()

    # -- on the event loop's thread --------------------------------------------------------------

    def _run(self, running: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(_log_loop_error)
        self._loop = loop
        try:
            loop.run_until_complete(self._main(running))
        finally:
            loop.close()

    async def _main(self, running: threading.Event) -> None:
        self._stopping = asyncio.Event()
        running.set()
        accepting = asyncio.ensure_future(self._accept_forever())
        await self._stopping.wait()
        accepting.cancel()
        for task in list(self._connections):
            task.cancel()
        await asyncio.wait([accepting, *self._connections], timeout=1)
        for connection in self._connections.values():
            connection.close()

    async def _accept_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                connection, peer = await loop.sock_accept(self._socket)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - out of file descriptors, a reset in the backlog, ...
                now = time.monotonic()
                if now - self._last_accept_error > 10:
                    self._last_accept_error = now
                    log.warning("http accept failed", error=repr(error))
                await asyncio.sleep(0.05)
                continue
            if self._open >= self._max_connections:
                self._refuse(connection)
                continue
            self._open += 1
            task = loop.create_task(self._serve(connection, peer, loop.time()))
            self._connections[task] = connection
            task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task) -> None:
        self._connections.pop(task).close()  # closed already, unless cancelled before it ran

    def _refuse(self, connection: socket.socket) -> None:
        """Past the cap: a 503 without reading the request (plain HTTP), or just a close (TLS)."""
        try:
            if self._web.tls is None:
                try:
                    connection.recv(65536)  # what already arrived, so the close sends FIN, not RST
                except BlockingIOError:
                    pass
                connection.send(_BUSY)
        except OSError:
            pass
        finally:
            connection.close()

    async def _serve(self, connection: socket.socket, peer, accepted: float) -> None:
        loop = asyncio.get_running_loop()
        client = peer[0] if isinstance(peer, tuple) and peer else None
        tls = self._web.tls
        channel = _TLSChannel(loop, connection, tls) if tls is not None else _PlainChannel(loop, connection)
        buffer = bytearray()
        try:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms wait for a delayed ACK
            deadline = accepted + self._head_timeout
            await asyncio.wait_for(channel.handshake(), max(deadline - loop.time(), 0))
            while True:
                try:
                    request = await asyncio.wait_for(_read_head(channel, buffer), max(deadline - loop.time(), 0))
                except _BadRequest as error:
                    await asyncio.wait_for(self._answer_bad_request(channel, error), self._response_timeout)
                    return
                keep_alive = await asyncio.wait_for(self._respond(request, channel), self._response_timeout)
                if not keep_alive:
                    await asyncio.wait_for(self._close(channel, linger=request.has_body or bool(buffer)),
                                           self._response_timeout)
                    return
                deadline = loop.time() + self._head_timeout
        except asyncio.TimeoutError:
            log.debug("http deadline passed", client=client)
            _reset(connection)
        except _ClientGone:
            pass
        except (OSError, EOFError) as error:  # ssl.SSLError too: plain HTTP to the TLS port is just closed
            log.debug("http connection error", client=client, error=repr(error)[:200])
        except asyncio.CancelledError:  # the server is stopping
            _reset(connection)
        except Exception as error:  # noqa: BLE001 - never let one connection's surprise print a traceback
            log.warning("http connection failed", client=client, error=repr(error)[:200])
        finally:
            self._open -= 1
            connection.close()

    async def _close(self, channel: _PlainChannel, linger: bool) -> None:
        """After the last response: half-close, and with ``linger`` read and drop a little of what
        the client still sends, so the close does not reset the connection before the client has
        read the answer."""
        await channel.finish()
        if not linger:
            return

        async def drop() -> None:
            dropped = 0
            while dropped < LINGER_BYTES:
                data = await channel.recv_raw()
                if not data:
                    return
                dropped += len(data)

        try:
            await asyncio.wait_for(drop(), LINGER_SECONDS)
        except (asyncio.TimeoutError, OSError):
            pass

    async def _answer_bad_request(self, channel: _PlainChannel, error: _BadRequest) -> None:
        body = f"{error.status.phrase}: {error.reason}\n".encode()
        await channel.send(self._head(error.status, "text/plain; charset=utf-8", len(body), keep_alive=False) + body)
        await self._close(channel, linger=True)

    async def _respond(self, request: _Request, channel: _PlainChannel) -> bool:
        """Answer one request; True if the connection stays open for the next."""
        keep_alive = request.keep_alive and not request.has_body  # bodies are never read: close after
        if request.method not in ("GET", "HEAD"):
            await channel.send(self._head(HTTPStatus.METHOD_NOT_ALLOWED, None, 0, keep_alive, request.version,
                                          "Allow: GET, HEAD\r\n"))
            return keep_alive
        path, _, query = request.target.partition("?")
        # /healthz stays open so container health checks need no credentials; it tells only whether
        # the data is fresh.
        if path != "/healthz" and self._auth.enabled:
            header = request.headers.get("authorization")
            allowed = self._auth.check(header)
            if allowed is None:  # bcrypt's deliberate cost: off the event loop
                allowed = await asyncio.get_running_loop().run_in_executor(self._pool, self._auth.allows, header)
            if not allowed:
                await channel.send(self._head(HTTPStatus.UNAUTHORIZED, None, 0, keep_alive, request.version,
                                              'WWW-Authenticate: Basic realm="bittensor-validator-exporter"\r\n'))
                return keep_alive
        try:
            status, content_type, chunks, gzip = await self._content(path, query, request)
        except Exception as error:  # noqa: BLE001 - the exporter's fault, not the client's: 500, one line
            log.error("http response failed", path=path, error=repr(error)[:300])
            status, content_type, chunks, gzip = (HTTPStatus.INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8",
                                                  [b"internal error\n"], False)
            keep_alive = False
        head = self._head(status, content_type, sum(map(len, chunks)), keep_alive, request.version,
                          "Content-Encoding: gzip\r\n" if gzip else "")
        await self._send(channel, head, chunks if request.method == "GET" else [])
        return keep_alive

    async def _content(self, path: str, query: str, request: _Request) -> tuple[HTTPStatus, str, list[bytes], bool]:
        """Status, content type, body chunks and whether they are gzip-encoded."""
        source = self._source
        gzip = False
        if path == "/metrics":
            publication = source.current()
            gzip = _accepts_gzip(request.headers.get("accept-encoding"))
            status, content_type = HTTPStatus.OK, CONTENT_TYPE
            chunks = publication.body(source.clock(), source.live(), gzip)
        elif path == "/api/v1/events" and source.events is not None:
            code, body = await asyncio.get_running_loop().run_in_executor(self._pool, source.events, query)
            status, content_type, chunks = HTTPStatus(code), "application/json", [body]
        elif path == "/healthz":
            fresh = source.current().is_fresh(source.clock())
            status = HTTPStatus.OK if fresh else HTTPStatus.SERVICE_UNAVAILABLE
            content_type = "text/plain; charset=utf-8"
            chunks = [b"ok\n" if fresh else b"stale: no successful refresh within the staleness limit\n"]
        elif path == "/":
            status, content_type = HTTPStatus.OK, "text/html; charset=utf-8"
            chunks = [LANDING_PAGE.format(version=__version__).encode()]
        else:
            status, content_type, chunks = HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", [b"not found\n"]
        return status, content_type, chunks, gzip

    def _head(self, status: HTTPStatus, content_type: Optional[str], length: int, keep_alive: bool,
              version: tuple[int, int] = (1, 1), extra: str = "") -> bytes:
        lines = [f"HTTP/1.1 {status.value} {status.phrase}\r\nServer: {SERVER}\r\nDate: {self._clock.date()}\r\n"]
        if content_type is not None:
            lines.append(f"Content-Type: {content_type}\r\n")
        lines.append(f"Content-Length: {length}\r\n{extra}")
        if content_type is not None:
            lines.append("Vary: Accept-Encoding\r\n")
        if not keep_alive:
            lines.append("Connection: close\r\n")
        elif version < (1, 1):
            lines.append("Connection: keep-alive\r\n")
        lines.append(self._extra_headers)
        lines.append("\r\n")
        return "".join(lines).encode("latin-1")

    @staticmethod
    async def _send(channel: _PlainChannel, head: bytes, chunks: list[bytes]) -> None:
        """The head and the body: small pieces joined, large chunks sent from where they are (no copy)."""
        pending = [head]
        for chunk in chunks:
            if len(chunk) < COALESCE_BYTES:
                pending.append(chunk)
                continue
            await channel.send(b"".join(pending))
            pending = []
            await channel.send(chunk)
        if pending:
            await channel.send(b"".join(pending))


def _descriptor_budget() -> int:
    """Connections the process's file-descriptor limit allows, the rest of the exporter served first."""
    try:
        import resource
    except ImportError:  # not on Unix
        return MAX_CONNECTIONS
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(16, soft - FD_RESERVE)


def _log_loop_error(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """Whatever asyncio reports (a bug, not a client: client errors end in ``_serve``) is one log line."""
    error = context.get("exception")
    log.warning("http event loop", message=str(context.get("message", ""))[:200],
              error=repr(error)[:200] if error is not None else None)


def split_listen_address(address: str) -> tuple[str, int]:
    """':9744' -> ('0.0.0.0', 9744); '[::1]:9744' -> ('::1', 9744)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)
