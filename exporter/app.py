"""Wire the exporter's parts together from a config: the one place that knows them all.

``cli.run`` and the tests both build the exporter here, so what the tests
drive is exactly what operators run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

from exporter.chain.endpoints import EndpointPool
from exporter.chain.session import ChainSession
from exporter.chain.wire import RequestCounter
from exporter.config import Config
from exporter.history.queries import answer_events
from exporter.history.store import Retention
from exporter.history.writer import HistoryWriter
from exporter.refresh import Refresher
from exporter.serving.routes import DEFAULT_TELEMETRY_PATH, MetricsSource, ProcessMetrics
from exporter.serving.server import MetricsServer, split_listen_address
from exporter.serving.web_config import WebConfig


# Seconds from "stop" to everything closed, whatever the exporter was doing: well
# inside the 10 s a supervisor (compose: 30 s) gives between SIGTERM and SIGKILL.
SHUTDOWN_SECONDS = 8.0
# Of those, what closing the chain connection may take at the end.
_SESSION_CLOSE_SECONDS = 2.5


@dataclass
class Exporter:
    config: Config
    counter: RequestCounter
    session: ChainSession
    refresher: Refresher
    server: MetricsServer

    def start(self, *, scheduled: bool = True) -> None:
        """Serve HTTP and start refreshing (``scheduled`` False: only on ``refresher.refresh_now()``)."""
        self.server.start()
        self.refresher.start(scheduled=scheduled)

    def close(self, timeout: float = SHUTDOWN_SECONDS) -> None:
        """Stop within about ``timeout`` seconds, whatever is in progress.

        The chain read in flight is cancelled first, so a refresh stalled on a
        silent endpoint ends at once (it publishes its failure). HTTP stops;
        the refresh thread finishes what it is doing, which is never more
        than a history commit, and closes the history on its own thread; then
        the chain connection is closed. Every wait is bounded: a thread that
        overruns is left behind (all are daemons; SQLite's WAL makes an
        unfinished commit safe).
        """
        deadline = time.monotonic() + timeout
        self.refresher.stopping()  # the read cancelled next is a stop, not a failed refresh
        self.session.cancel()
        self.server.stop()
        session_seconds = min(_SESSION_CLOSE_SECONDS, timeout / 3)
        self.refresher.stop(max(0.1, deadline - session_seconds - time.monotonic()))
        self.session.close(max(0.1, deadline - time.monotonic()))


def build_exporter(
    config: Config,
    web: WebConfig = WebConfig(),
    *,
    with_history: bool = True,
    clock: Optional[Callable[[], float]] = None,
    pool: Optional[EndpointPool] = None,
    telemetry_path: str = DEFAULT_TELEMETRY_PATH,
) -> Exporter:
    """Every part, connected; nothing started. Raises OSError when the listen
    address is unusable; the history path and the telemetry path are checked by
    the CLI before this."""
    h = config.history
    history = None
    if with_history:
        # Opened by the refresh thread on its first refresh, never here.
        history = HistoryWriter(h.path, Retention.of(h), stake_change_ratio=h.stake_change_ratio,
                                watched=config.scope.watched_hotkeys, genesis_hash=config.chain.genesis_hash)
    counter = RequestCounter()
    session = ChainSession(config.chain, counter, pool=pool)
    endpoints = tuple(e.label for e in session.pool.endpoints)
    refresher = Refresher(config, session, counter, endpoints, history=history, **({"clock": clock} if clock else {}))
    events = (lambda query: answer_events(h.path, query)) if history is not None and h.api_enabled else None
    source = MetricsSource(refresher.current, live=ProcessMetrics(), events=events, **({"clock": clock} if clock else {}))
    host, port = split_listen_address(config.listen_address)
    try:
        server = MetricsServer(host, port, source, web, telemetry_path=telemetry_path,
                               max_connections_per_client=config.max_connections_per_client)
    except (OSError, ValueError):
        session.close()
        raise
    return Exporter(config, counter, session, refresher, server)
