"""Run the exporter in-process against a simulated node, and read its /metrics like Prometheus."""

from __future__ import annotations

import gzip
import urllib.request
from dataclasses import replace
from typing import Optional

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from exporter.chain_session import ChainSession
from exporter.config import ChainConfig, Config, ScopeConfig
from exporter.history_api import answer_events
from exporter.history_store import Retention
from exporter.history_writer import HistoryWriter
from exporter.http_server import MetricsServer, MetricsSource
from exporter.refresher import Refresher, tune_gc
from exporter.self_metrics import SelfMetrics
from exporter.wire import RequestCounter


class ExporterUnderTest:
    """The same wiring as ``exporter.cli.run``, with the refresh driven by the test."""

    def __init__(self, endpoint, scope: ScopeConfig = ScopeConfig(), clock=None, history_path: Optional[str] = None,
                 retention: Retention = Retention(), stake_change_ratio: float = 0.05, chain_timeout: float = 10,
                 pool=None, **config_overrides):
        endpoints = (endpoint,) if isinstance(endpoint, str) else tuple(endpoint)
        self.config = replace(
            Config(chain=ChainConfig(endpoints=endpoints, timeout_seconds=chain_timeout), scope=scope, refresh_timeout_seconds=30),
            **config_overrides,
        )
        tune_gc()
        self.counter = RequestCounter()
        self.registry = CollectorRegistry()
        self.metrics = SelfMetrics(self.registry, self.counter)
        self.session = ChainSession(self.config.chain, self.counter, pool=pool, observe=self.metrics.observe_endpoint)
        self.metrics.add_endpoints(e.label for e in self.session.pool.endpoints)
        kwargs = {"clock": clock} if clock else {}
        self.history = None
        events = None
        if history_path is not None:
            self.history = HistoryWriter(history_path, self.metrics, retention=retention,
                                         stake_change_ratio=stake_change_ratio, watched=scope.watched_hotkeys)
            events = lambda query: answer_events(history_path, query)  # noqa: E731
        self.refresher = Refresher(self.config, self.session, self.metrics, self.counter, history=self.history, **kwargs)
        source = MetricsSource(self.refresher.served_payload, self.refresher.is_fresh, self.registry, events,
                              lambda: self.refresher.generation)
        self.server = MetricsServer("127.0.0.1", 0, source)
        self.server.start()
        self.url = f"http://127.0.0.1:{self.server.port}"

    def refresh(self) -> bool:
        return self.refresher.refresh_once()

    def get(self, path: str, headers: Optional[dict] = None, method: str = "GET"):
        request = urllib.request.Request(self.url + path, headers=headers or {}, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def scrape(self, gzip_encoding: bool = False) -> dict:
        """{(name, frozenset(labels)): value} for every sample in /metrics."""
        headers = {"Accept-Encoding": "gzip"} if gzip_encoding else {}
        status, response_headers, body = self.get("/metrics", headers)
        assert status == 200
        if response_headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        return parse_exposition(body.decode())

    def close(self) -> None:
        self.server.stop()
        self.session.close()
        if self.history is not None:
            self.history.close()


def parse_exposition(text: str) -> dict:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"duplicate series {key}"
            samples[key] = sample.value
    return samples


def series(samples: dict, name: str, **labels) -> Optional[float]:
    return samples.get((name, frozenset((k, str(v)) for k, v in labels.items())))


def names(samples: dict, name: str) -> list[dict]:
    return [dict(labels) for n, labels in samples if n == name]
