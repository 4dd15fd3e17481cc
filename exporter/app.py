"""Wire the exporter's parts together from a config: the one place that knows them all.

``cli.run`` and the tests both build the exporter here, so what the tests
drive is exactly what operators run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from prometheus_client import CollectorRegistry

from exporter.chain.session import ChainSession
from exporter.config import Config, HistoryConfig
from exporter.chain.endpoints import EndpointPool
from exporter.history.queries import answer_events
from exporter.history.store import Retention
from exporter.history.writer import HistoryWriter
from exporter.serving.server import MetricsServer, MetricsSource, split_listen_address
from exporter.refresh import Refresher
from exporter.serving.status import SelfMetrics
from exporter.serving.web_config import WebConfig
from exporter.chain.wire import RequestCounter


def retention_of(history: HistoryConfig) -> Retention:
    return Retention(
        every_refresh_seconds=history.samples_every_refresh_hours * 3600,
        hourly_seconds=history.samples_hourly_days * 86400,
        sample_all=history.samples_scope == "all",
    )


@dataclass
class Exporter:
    config: Config
    counter: RequestCounter
    registry: CollectorRegistry
    metrics: SelfMetrics
    session: ChainSession
    history: Optional[HistoryWriter]
    refresher: Refresher
    server: MetricsServer

    def close(self) -> None:
        self.server.stop()
        self.session.close()
        if self.history is not None:
            self.history.close()


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
    counter = RequestCounter()
    registry = CollectorRegistry()
    metrics = SelfMetrics(registry, counter)
    h = config.history
    history = None
    if with_history:
        history = HistoryWriter(h.path, metrics, retention=retention_of(h), stake_change_ratio=h.stake_change_ratio,
                                watched=config.scope.watched_hotkeys)
    session = ChainSession(config.chain, counter, pool=pool, observe=metrics.observe_endpoint)
    metrics.add_endpoints(e.label for e in session.pool.endpoints)
    refresher = Refresher(config, session, metrics, counter, history=history, **({"clock": clock} if clock else {}))
    events = (lambda query: answer_events(h.path, query)) if history is not None and h.api_enabled else None
    source = MetricsSource(refresher.served_payload, refresher.is_fresh, registry, events, lambda: refresher.generation)
    host, port = split_listen_address(config.listen_address)
    try:
        server = MetricsServer(host, port, source, web)
    except OSError:
        session.close()
        if history is not None:
            history.close()
        raise
    return Exporter(config, counter, registry, metrics, session, history, refresher, server)
