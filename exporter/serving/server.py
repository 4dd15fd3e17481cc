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
- a response is written in slices under flow control (bounded memory per
  connection) within ``response_timeout`` (60 s);
- at most ``max_connections`` (1,024) connections at once, beyond that an
  immediate 503 (plain HTTP) or close (TLS);
- GET and HEAD only; optional TLS and basic auth from an exporter-toolkit web
  config file; bcrypt checks and the events API's SQLite reads run on a small
  thread pool, never on the event loop;
- a client's error (garbage, a hang-up mid-response, a failed handshake) is
  at most one debug log line, never a traceback.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import socket
import ssl
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
WRITE_SLICE_BYTES = 256 * 1024  # a large body goes out in slices, waiting for the socket in between
WRITE_BUFFER_HIGH_BYTES = 256 * 1024  # unsent bytes a connection buffers before it waits for the client
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


def _parse_version(text: str) -> tuple[int, int]:
    if not text.startswith("HTTP/"):
        raise _BadRequest(HTTPStatus.BAD_REQUEST, "bad request line")
    major, dot, minor = text[5:].partition(".")
    if not (dot and major.isdigit() and minor.isdigit() and len(major) <= 3 and len(minor) <= 3):
        raise _BadRequest(HTTPStatus.BAD_REQUEST, "bad HTTP version")
    version = (int(major), int(minor))
    if version[0] != 1:
        raise _BadRequest(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "HTTP/1.x only")
    return version


async def _read_line(reader: asyncio.StreamReader, too_long: HTTPStatus) -> bytes:
    try:
        return await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError:
        raise _BadRequest(too_long, "line too long") from None


async def _read_head(reader: asyncio.StreamReader) -> _Request:
    """One request head, within the reader's line limit and the header count and size limits."""
    line = await _read_line(reader, HTTPStatus.REQUEST_URI_TOO_LONG)
    if line in (b"\r\n", b"\n"):  # one empty line before a request is tolerated (RFC 9112 2.2)
        line = await _read_line(reader, HTTPStatus.REQUEST_URI_TOO_LONG)
    if len(line) > MAX_LINE_BYTES + 2:
        raise _BadRequest(HTTPStatus.REQUEST_URI_TOO_LONG, "request line too long")
    parts = line.decode("latin-1").split()
    if len(parts) != 3:
        raise _BadRequest(HTTPStatus.BAD_REQUEST, "bad request line")
    method, target, version_text = parts
    version = _parse_version(version_text)
    headers: dict[str, str] = {}
    count = total = 0
    while True:
        line = await _read_line(reader, HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
        if line in (b"\r\n", b"\n"):
            return _Request(method, target, version, headers)
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
        self._connections: set[asyncio.Task] = set()
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
            running.wait()

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

    # -- the event loop's thread ----------------------------------------------------------------

    def _run(self, running: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(_log_loop_error)
        self._loop = loop
        self._stopping = asyncio.Event()
        try:
            loop.run_until_complete(self._main(running))
        finally:
            loop.close()

    async def _main(self, running: threading.Event) -> None:
        running.set()
        accepting = asyncio.ensure_future(self._accept_forever())
        assert self._stopping is not None
        await self._stopping.wait()
        accepting.cancel()
        for task in list(self._connections):
            task.cancel()
        await asyncio.wait([accepting, *self._connections], timeout=1)

    async def _accept_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                connection, peer = await loop.sock_accept(self._socket)
            except OSError as error:  # out of file descriptors, a connection reset in the backlog, ...
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
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)

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
        transport: Optional[asyncio.BaseTransport] = None
        writer: Optional[asyncio.StreamWriter] = None
        graceful = False
        try:
            reader = asyncio.StreamReader(limit=MAX_LINE_BYTES + 2, loop=loop)
            protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
            deadline = accepted + self._head_timeout
            tls = self._web.tls
            opening = loop.connect_accepted_socket(
                lambda: protocol, connection, ssl=tls,
                ssl_handshake_timeout=max(deadline - loop.time(), 0.001) if tls is not None else None,
            )
            transport, _ = await asyncio.wait_for(opening, max(deadline - loop.time(), 0))
            transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH_BYTES)
            writer = asyncio.StreamWriter(transport, protocol, reader, loop)
            while True:
                try:
                    request = await asyncio.wait_for(_read_head(reader), max(deadline - loop.time(), 0))
                except _BadRequest as error:
                    await self._answer_bad_request(reader, writer, error)
                    graceful = True
                    return
                if not await self._respond(request, writer):
                    graceful = True
                    return
                deadline = loop.time() + self._head_timeout
        except asyncio.TimeoutError:
            log.debug("http request head deadline passed", client=client)
        except (OSError, EOFError, asyncio.IncompleteReadError) as error:  # ssl.SSLError is an OSError
            log.debug("http connection error", client=client, error=repr(error)[:200])
        except asyncio.CancelledError:
            pass  # the server is stopping
        except Exception as error:  # noqa: BLE001 - never let one connection's surprise print a traceback
            log.warning("http connection failed", client=client, error=repr(error)[:200])
        finally:
            try:
                if graceful and writer is not None:
                    await self._close(writer)
            finally:
                self._open -= 1
                if transport is not None:
                    transport.abort()  # a no-op once closed
                else:
                    connection.close()

    async def _close(self, writer: asyncio.StreamWriter) -> None:
        """Flush what is still buffered (at most ``WRITE_BUFFER_HIGH_BYTES``), then close."""
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), self._head_timeout)
        except (asyncio.TimeoutError, OSError):
            pass

    async def _answer_bad_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                                  error: _BadRequest) -> None:
        body = f"{error.status.phrase}: {error.reason}\n".encode()
        await self._send(writer, self._head(error.status, "text/plain; charset=utf-8", len(body), False), [body])
        # Read (and drop) a little of what the client is still sending before closing: closing
        # with unread data resets the connection, and the client may lose the answer.
        if writer.can_write_eof():
            writer.write_eof()
            try:
                await asyncio.wait_for(reader.read(1 << 18), 1)
            except (asyncio.TimeoutError, OSError):
                pass

    async def _respond(self, request: _Request, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; True if the connection stays open for the next."""
        keep_alive = request.keep_alive and not request.has_body  # bodies are never read: close after
        send_body = request.method == "GET"
        if request.method not in ("GET", "HEAD"):
            head = self._head(HTTPStatus.METHOD_NOT_ALLOWED, None, 0, keep_alive, request.version, "Allow: GET, HEAD\r\n")
            await self._send(writer, head, [])
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
                head = self._head(HTTPStatus.UNAUTHORIZED, None, 0, keep_alive, request.version,
                                  'WWW-Authenticate: Basic realm="bittensor-validator-exporter"\r\n')
                await self._send(writer, head, [])
                return keep_alive
        try:
            status, content_type, chunks, gzip = await self._content(path, query, request)
        except Exception as error:  # noqa: BLE001 - the exporter's fault, not the client's: 500, one line
            log.error("http response failed", path=path, error=repr(error)[:300])
            status, content_type, chunks, gzip = HTTPStatus.INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8", [b"internal error\n"], False
            keep_alive = False
        length = sum(map(len, chunks))
        head = self._head(status, content_type, length, keep_alive, request.version,
                          "Content-Encoding: gzip\r\n" if gzip else "")
        await self._send(writer, head, chunks if send_body else [])
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

    async def _send(self, writer: asyncio.StreamWriter, head: bytes, chunks: list[bytes]) -> None:
        """Head and body in slices under flow control, the whole within the response deadline."""
        transport = writer.transport
        timer = asyncio.get_running_loop().call_later(self._response_timeout, transport.abort)
        try:
            if len(chunks) == 1 and len(chunks[0]) <= WRITE_SLICE_BYTES:
                writer.write(head + chunks[0])
            else:
                writer.write(head)
                for chunk in chunks:
                    view = memoryview(chunk)
                    for start in range(0, len(view), WRITE_SLICE_BYTES):
                        await self._drain(writer)
                        writer.write(view[start:start + WRITE_SLICE_BYTES])
            await self._drain(writer)
        finally:
            timer.cancel()

    @staticmethod
    async def _drain(writer: asyncio.StreamWriter) -> None:
        if writer.transport.is_closing():  # the client left (or the deadline aborted it): stop writing
            raise ConnectionResetError("connection closed while writing")
        await writer.drain()


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
    """Whatever asyncio reports about a connection is one log line, never a traceback on stderr."""
    error = context.get("exception")
    log.debug("http event loop", message=str(context.get("message", ""))[:200],
              error=repr(error)[:200] if error is not None else None)


def split_listen_address(address: str) -> tuple[str, int]:
    """':9744' -> ('0.0.0.0', 9744); '[::1]:9744' -> ('::1', 9744)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)
