"""What each path answers: the metrics, ``/healthz``, the events API and the landing page.

The metrics path is ``telemetry_path`` (``--web.telemetry-path``, default
``/metrics``); any other path, the default one included, is 404. With ``/``
the metrics replace the landing page, as in node_exporter.

A scrape sends the bytes the last refresh prepared plus the exporter's small
live self-metrics, so it costs about as much as sending a static file.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import html
import re
import threading
import time
from http import HTTPStatus
from typing import Callable, Optional

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.process_collector import ProcessCollector

from exporter import __version__
from exporter.serving.http_head import Request
from exporter.serving.publication import Publication

LIVE_METRICS_MAX_AGE_SECONDS = 1.0

DEFAULT_TELEMETRY_PATH = "/metrics"
# Served whatever the telemetry path is, so it may not be one of them.
RESERVED_PATHS = ("/healthz", "/api/v1/events")
# An absolute path of RFC 3986 path characters (percent-encoding included), at most 256 of them.
_TELEMETRY_PATH = re.compile(r"/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2}){0,255}")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LANDING_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Bittensor validator exporter</title></head>
<body>
<h1>Bittensor validator exporter</h1>
<p>Version {version}. Own, inherited and root stake, childkey takes and parent/child
relationships of Bittensor validators, refreshed on an interval from one finalized block.</p>
<ul>
<li><a href="{metrics}">{metrics}</a>: Prometheus metrics</li>
<li><a href="/healthz">/healthz</a>: 200 while the last refresh is fresh, 503 otherwise</li>
<li><a href="/api/v1/events">/api/v1/events</a>: recorded changes (JSON; hotkey, netuid, kind, since, until, limit, cursor)</li>
</ul>
</body></html>
"""


def telemetry_path_problem(path: str) -> Optional[str]:
    """Why ``path`` cannot be the path metrics are served on, or None."""
    if not isinstance(path, str) or not _TELEMETRY_PATH.fullmatch(path):
        shown = repr(path) if len(repr(path)) <= 60 else repr(path)[:57] + "..."
        return ("must be an absolute URL path such as /metrics (letters, digits, -._~!$&'()*+,;=:@/ and "
                f"%XX escapes, at most 256 characters), got {shown}")
    if path.startswith("//"):
        return f"must not start with // (a link to it would name another host), got {path!r}"
    if any(segment in (".", "..") for segment in path.split("/")):
        return f"must not have . or .. segments (clients resolve them away), got {path!r}"
    if path in RESERVED_PATHS:
        return f"{path} is served by the exporter already (reserved: {', '.join(RESERVED_PATHS)})"
    return None


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


class Routes:
    """The answer to each path, metrics on ``telemetry_path`` (ValueError if ``telemetry_path_problem`` objects)."""

    def __init__(self, source: MetricsSource, telemetry_path: str = DEFAULT_TELEMETRY_PATH):
        problem = telemetry_path_problem(telemetry_path)
        if problem:
            raise ValueError(f"telemetry path: {problem}")
        self.telemetry_path = telemetry_path
        self._landing_page = LANDING_PAGE.format(version=html.escape(__version__),
                                                 metrics=html.escape(telemetry_path, quote=True)).encode()
        self._source = source

    async def content(self, path: str, query: str, request: Request,
                      pool: Optional[concurrent.futures.Executor]) -> tuple[HTTPStatus, str, list[bytes], bool]:
        """Status, content type, body chunks and whether they are gzip-encoded; the events API's
        SQLite reads run on ``pool``, never on the event loop."""
        source = self._source
        gzip = False
        if path == self.telemetry_path:
            publication = source.current()
            gzip = _accepts_gzip(request.headers.get("accept-encoding"))
            status, content_type = HTTPStatus.OK, CONTENT_TYPE
            chunks = publication.body(source.clock(), source.live(), gzip)
        elif path == "/api/v1/events" and source.events is not None:
            code, body = await asyncio.get_running_loop().run_in_executor(pool, source.events, query)
            status, content_type, chunks = HTTPStatus(code), "application/json", [body]
        elif path == "/healthz":
            fresh = source.current().is_fresh(source.clock())
            status = HTTPStatus.OK if fresh else HTTPStatus.SERVICE_UNAVAILABLE
            content_type = "text/plain; charset=utf-8"
            chunks = [b"ok\n" if fresh else b"stale: no successful refresh within the staleness limit\n"]
        elif path == "/":
            status, content_type = HTTPStatus.OK, "text/html; charset=utf-8"
            chunks = [self._landing_page]
        else:
            status, content_type, chunks = HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", [b"not found\n"]
        return status, content_type, chunks, gzip
