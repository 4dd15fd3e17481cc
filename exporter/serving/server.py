"""Serve HTTP connections safely on one event loop; what each path answers is ``routes``.

The server never touches the chain. One asyncio event loop on its own thread
serves every connection, so an idle or slow connection costs a socket and a
few KiB, not a thread or a slot that real scrapes wait for. Hardening:

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
- at most ``max_connections`` (1,024) connections at once, and at most
  ``max_connections_per_client`` (64, ``web.max_connections_per_client``) from
  one client (an IPv4 address, an IPv6 /64), beyond either an immediate 503
  (plain HTTP) or close (TLS): one host holding 1,100 connections made 59 of
  60 scrapes fail while it reopened them, and now holds 64, leaving the rest
  to Prometheus;
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
import threading
import time
from http import HTTPStatus
from typing import Optional

import structlog

from exporter import __version__
from exporter.serving.admission import CLIENT, Admission, client_key, descriptor_budget
from exporter.serving.basic_auth import BasicAuth
from exporter.serving.channels import PlainChannel, TLSChannel, reset
from exporter.serving.http_head import BadRequest, ClientGone, Request, read_head
from exporter.serving.routes import DEFAULT_TELEMETRY_PATH, MetricsSource, Routes
from exporter.serving.web_config import WebConfig

log = structlog.get_logger("exporter.http")

REQUEST_TIMEOUT_SECONDS = 10  # the whole request head, from accept (TLS handshake included) or the last response
RESPONSE_TIMEOUT_SECONDS = 60  # the whole response: a client that stops reading is cut off
MAX_CONNECTIONS = 1024
MAX_CONNECTIONS_PER_CLIENT = 64  # a Prometheus HA pair needs 1 each; a reverse proxy in front, a few
CLIENT_REFUSED_LOG_SECONDS = 60  # at most one warning a minute about clients past their limit
COALESCE_BYTES = 65536  # body chunks below this are joined with their neighbours into one send
LINGER_SECONDS = 1.0  # after an error answer: how long unread input is drained before closing
LINGER_BYTES = 1 << 18
LISTEN_BACKLOG = 1024
IO_THREADS = 2  # bcrypt checks and events API queries, off the event loop
SERVER = f"bittensor-validator-exporter/{__version__}"

_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


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
    ``request_timeout`` is the deadline for a whole request head. Metrics are
    served on ``telemetry_path`` (ValueError if ``routes.telemetry_path_problem`` objects).
    """

    def __init__(self, host: str, port: int, source: MetricsSource, web: WebConfig = WebConfig(),
                 max_connections: int = MAX_CONNECTIONS, request_timeout: float = REQUEST_TIMEOUT_SECONDS,
                 response_timeout: float = RESPONSE_TIMEOUT_SECONDS, telemetry_path: str = DEFAULT_TELEMETRY_PATH,
                 max_connections_per_client: int = MAX_CONNECTIONS_PER_CLIENT):
        self._routes = Routes(source, telemetry_path)
        self._web = web
        self._auth = BasicAuth(web.users)
        self._admission = Admission(min(max_connections, descriptor_budget(MAX_CONNECTIONS)), max_connections_per_client)
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
        self._connections: dict[asyncio.Task, tuple[socket.socket, str]] = {}  # and its client_key
        self._last_client_refused = float("-inf")
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stopping: Optional[asyncio.Event] = None
        self._pool: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self._thread: Optional[threading.Thread] = None
        self._lifecycle = threading.Lock()
        self._closed = False
        self._last_accept_error = float("-inf")

    @property
    def telemetry_path(self) -> str:
        return self._routes.telemetry_path

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
        for connection, _ in self._connections.values():
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
            client = client_key(peer)
            refused = self._admission.admit(client)
            if refused is not None:
                if refused == CLIENT:
                    self._note_client_refused(client)
                self._refuse(connection)
                continue
            task = loop.create_task(self._serve(connection, peer, loop.time()))
            self._connections[task] = (connection, client)
            task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task) -> None:
        connection, client = self._connections.pop(task)
        connection.close()  # closed already, unless cancelled before it ran
        self._admission.release(client)

    def _note_client_refused(self, client: str) -> None:
        now = time.monotonic()
        if now - self._last_client_refused >= CLIENT_REFUSED_LOG_SECONDS:
            self._last_client_refused = now
            log.warning("http connections refused: one client holds its limit", client=client,
                        limit=self._admission.per_client, setting="web.max_connections_per_client")

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
        channel = TLSChannel(loop, connection, tls) if tls is not None else PlainChannel(loop, connection)
        buffer = bytearray()
        try:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms wait for a delayed ACK
            deadline = accepted + self._head_timeout
            await asyncio.wait_for(channel.handshake(), max(deadline - loop.time(), 0))
            while True:
                try:
                    request = await asyncio.wait_for(read_head(channel, buffer), max(deadline - loop.time(), 0))
                except BadRequest as error:
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
            reset(connection)
        except ClientGone:
            pass
        except (OSError, EOFError) as error:  # ssl.SSLError too: plain HTTP to the TLS port is just closed
            log.debug("http connection error", client=client, error=repr(error)[:200])
        except asyncio.CancelledError:  # the server is stopping
            reset(connection)
        except Exception as error:  # noqa: BLE001 - never let one connection's surprise print a traceback
            log.warning("http connection failed", client=client, error=repr(error)[:200])
        finally:
            connection.close()

    async def _close(self, channel: PlainChannel, linger: bool) -> None:
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

    async def _answer_bad_request(self, channel: PlainChannel, error: BadRequest) -> None:
        body = f"{error.status.phrase}: {error.reason}\n".encode()
        await channel.send(self._head(error.status, "text/plain; charset=utf-8", len(body), keep_alive=False) + body)
        await self._close(channel, linger=True)

    async def _respond(self, request: Request, channel: PlainChannel) -> bool:
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
            status, content_type, chunks, gzip = await self._routes.content(path, query, request, self._pool)
        except Exception as error:  # noqa: BLE001 - the exporter's fault, not the client's: 500, one line
            log.error("http response failed", path=path, error=repr(error)[:300])
            status, content_type, chunks, gzip = (HTTPStatus.INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8",
                                                  [b"internal error\n"], False)
            keep_alive = False
        head = self._head(status, content_type, sum(map(len, chunks)), keep_alive, request.version,
                          "Content-Encoding: gzip\r\n" if gzip else "")
        await self._send(channel, head, chunks if request.method == "GET" else [])
        return keep_alive

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
    async def _send(channel: PlainChannel, head: bytes, chunks: list[bytes]) -> None:
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
