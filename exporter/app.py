"""Wire the exporter's parts together from a config: the one place that knows them all.

``cli.run`` and the tests both build the exporter here, so what the tests
drive is exactly what operators run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from exporter.chain.endpoints import EndpointPool
from exporter.chain.session import ChainSession
from exporter.chain.wire import RequestCounter
from exporter.config import Config
from exporter.history.queries import answer_events
from exporter.history.store import Retention
from exporter.history.writer import HistoryWriter, refuse_newer_file
from exporter.refresh import Refresher
from exporter.serving.server import MetricsServer, MetricsSource, ProcessMetrics, split_listen_address
from exporter.serving.web_config import WebConfig


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

    def close(self, timeout: Optional[float] = None) -> None:
        """Stop serving, let the refresh in progress finish (it closes the history), drop the chain."""
        self.server.stop()
        self.refresher.stop(timeout)
        self.session.close()


def build_exporter(
    config: Config,
    web: WebConfig = WebConfig(),
    *,
    with_history: bool = True,
    clock: Optional[Callable[[], float]] = None,
    pool: Optional[EndpointPool] = None,
) -> Exporter:
    """Every part, connected; nothing started. Raises SchemaTooNew for a history
    file from a newer exporter and OSError when the listen address is unusable."""
    h = config.history
    history = None
    if with_history:
        refuse_newer_file(h.path)
        # Opened by the refresh thread on its first refresh, never here.
        history = HistoryWriter(h.path, Retention.of(h), stake_change_ratio=h.stake_change_ratio,
                                watched=config.scope.watched_hotkeys)
    counter = RequestCounter()
    session = ChainSession(config.chain, counter, pool=pool)
    endpoints = tuple(e.label for e in session.pool.endpoints)
    refresher = Refresher(config, session, counter, endpoints, history=history, **({"clock": clock} if clock else {}))
    events = (lambda query: answer_events(h.path, query)) if history is not None and h.api_enabled else None
    source = MetricsSource(refresher.current, live=ProcessMetrics(), events=events, **({"clock": clock} if clock else {}))
    host, port = split_listen_address(config.listen_address)
    try:
        server = MetricsServer(host, port, source, web)
    except OSError:
        session.close()
        raise
    return Exporter(config, counter, session, refresher, server)
