"""Serve ``/metrics``, ``/healthz`` and a landing page; never touch the chain.

A scrape sends the bytes the last refresh prepared plus the exporter's small
live self-metrics, so it costs about as much as sending a static file.
Hardening: GET and HEAD only, a read timeout per connection (slow or silent
clients are cut off), a cap on concurrent connections (past it: an immediate
503), optional TLS and basic auth from an exporter-toolkit web config file.
"""

from __future__ import annotations

import selectors
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional

import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.process_collector import ProcessCollector

from exporter import __version__
from exporter.serving.publication import Publication
from exporter.serving.web_config import BasicAuth, WebConfig

log = structlog.get_logger("exporter.http")

# Seconds a client may take to send its request line, headers, or to read the
# response; http.server itself caps a header line at 64 KiB and 100 headers.
REQUEST_TIMEOUT_SECONDS = 10
MAX_CONNECTIONS = 64
LIVE_METRICS_MAX_AGE_SECONDS = 1.0

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

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


class ProcessMetrics:
    """The process's own CPU, memory and file descriptors, read live at scrape time.

    Rendered at most once a second: a burst of concurrent scrapes shares one
    reading instead of queueing on the GIL for each. The cache holds
    immutable bytes; nothing else is shared with the refresh thread.
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
        # query string -> (status, JSON body); None when the history API is disabled
        self.events = events


def _accepts_gzip(header: Optional[str]) -> bool:
    for part in (header or "").split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() == "gzip":
            return params.replace(" ", "").lower() not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def make_handler(source: MetricsSource, web: WebConfig = WebConfig(),
                 request_timeout: float = REQUEST_TIMEOUT_SECONDS) -> type[BaseHTTPRequestHandler]:
    auth = BasicAuth(web.users)

    class Handler(BaseHTTPRequestHandler):
        server_version = f"bittensor-validator-exporter/{__version__}"
        protocol_version = "HTTP/1.1"
        timeout = request_timeout
        # Headers and body go out in separate writes; without TCP_NODELAY the last
        # small write waits for the client's delayed ACK (about 40 ms a scrape).
        disable_nagle_algorithm = True

        def setup(self) -> None:
            super().setup()
            if web.tls is not None:
                # The handshake runs here, in the connection's own thread and under
                # its timeout, so a slow TLS client never stalls accepting others.
                self.connection.do_handshake()

        def end_headers(self) -> None:
            for name, value in web.headers.items():
                self.send_header(name, value)
            super().end_headers()

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            self._dispatch(send_body=True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._dispatch(send_body=False)

        def _not_allowed(self) -> None:
            self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
            self.send_header("Allow", "GET, HEAD")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed  # noqa: N815

        def _dispatch(self, send_body: bool) -> None:
            path, _, query = self.path.partition("?")
            # /healthz stays open so container health checks need no credentials;
            # it tells only whether the data is fresh.
            if path != "/healthz" and not auth.allows(self.headers.get("Authorization")):
                self.send_response(HTTPStatus.UNAUTHORIZED)
                self.send_header("WWW-Authenticate", 'Basic realm="bittensor-validator-exporter"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if path == "/api/v1/events" and source.events is not None:
                status, body = source.events(query)
                self._send(status, "application/json", [body], send_body)
            elif path == "/metrics":
                self._metrics(send_body)
            elif path == "/healthz":
                fresh = source.current().is_fresh(source.clock())
                text = b"ok\n" if fresh else b"stale: no successful refresh within the staleness limit\n"
                self._send(HTTPStatus.OK if fresh else HTTPStatus.SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", [text], send_body)
            elif path == "/":
                page = LANDING_PAGE.format(version=__version__).encode()
                self._send(HTTPStatus.OK, "text/html; charset=utf-8", [page], send_body)
            else:
                self._send(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", [b"not found\n"], send_body)

        def _metrics(self, send_body: bool) -> None:
            publication = source.current()
            gzip = _accepts_gzip(self.headers.get("Accept-Encoding"))
            chunks = publication.body(source.clock(), source.live(), gzip)
            self._send(HTTPStatus.OK, CONTENT_TYPE, chunks, send_body, gzip=gzip)

        def _send(self, status, content_type: str, chunks: list[bytes], send_body: bool, gzip: bool = False) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(sum(map(len, chunks))))
            if gzip:
                self.send_header("Content-Encoding", "gzip")
            self.send_header("Vary", "Accept-Encoding")
            self.end_headers()
            if send_body:
                for chunk in chunks:
                    self.wfile.write(chunk)

        def log_message(self, format: str, *args) -> None:  # noqa: A002 - scrapes are not logged
            pass

    return Handler


class _BoundedServer(ThreadingHTTPServer):
    """One thread per connection, but never more than ``max_connections`` at once."""

    daemon_threads = True
    max_connections = MAX_CONNECTIONS

    def server_activate(self) -> None:
        self._slots = threading.BoundedSemaphore(self.max_connections)
        self._wake, self._waker = socket.socketpair()
        super().server_activate()

    def serve_until_stopped(self) -> None:
        """``serve_forever`` without its half-second poll: ``stop_serving`` wakes the loop at once."""
        with selectors.DefaultSelector() as selector:
            selector.register(self, selectors.EVENT_READ)
            selector.register(self._wake, selectors.EVENT_READ)
            while True:
                ready = {key.fileobj for key, _ in selector.select()}
                if self._wake in ready:
                    return
                self._handle_request_noblock()

    def stop_serving(self) -> None:
        self._waker.send(b"x")

    def server_close(self) -> None:
        super().server_close()
        self._wake.close()
        self._waker.close()

    def handle_error(self, request, client_address) -> None:
        # A client that hangs up or sends garbage mid-request is not the exporter's
        # error: one debug line instead of socketserver's traceback on stderr.
        log.debug("http connection error", client=client_address[0] if client_address else None,
                  error=repr(sys.exc_info()[1]))

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            _refuse_busy(request)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _BoundedServer6(_BoundedServer):
    address_family = socket.AF_INET6


def _refuse_busy(request) -> None:
    try:
        request.settimeout(1)
        request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    except OSError:
        pass  # a TLS socket before its handshake, or a client already gone


class MetricsServer:
    """A threaded HTTP(S) server on ``host:port``; ``port`` 0 picks a free port."""

    def __init__(self, host: str, port: int, source: MetricsSource, web: WebConfig = WebConfig(),
                 max_connections: int = MAX_CONNECTIONS, request_timeout: float = REQUEST_TIMEOUT_SECONDS):
        server_class = _BoundedServer6 if ":" in host else _BoundedServer
        server_class = type("Server", (server_class,), {"max_connections": max_connections})
        self._server = server_class((host, port), make_handler(source, web, request_timeout))
        if web.tls is not None:
            self._server.socket = web.tls.wrap_socket(self._server.socket, server_side=True, do_handshake_on_connect=False)
        self._thread: Optional[threading.Thread] = None
        self._closed = False

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_until_stopped, name="http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port; safe to call more than once."""
        if self._thread is not None:
            self._server.stop_serving()
            self._thread.join()
            self._thread = None
        if not self._closed:
            self._closed = True
            self._server.server_close()


def split_listen_address(address: str) -> tuple[str, int]:
    """':9744' -> ('0.0.0.0', 9744); '[::1]:9744' -> ('::1', 9744)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)
