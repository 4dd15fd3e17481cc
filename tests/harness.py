"""Run the exporter in-process against a simulated node, and read its /metrics like Prometheus."""

from __future__ import annotations

import gzip
import urllib.request
from dataclasses import replace
from typing import Optional

from prometheus_client.parser import text_string_to_metric_families

from exporter.app import build_exporter
from exporter.config import ChainConfig, Config, HistoryConfig, ScopeConfig


class ExporterUnderTest:
    """``exporter.app.build_exporter`` on a free loopback port, the refresh driven by the test."""

    def __init__(self, endpoint, scope: ScopeConfig = ScopeConfig(), clock=None, history_path: Optional[str] = None,
                 stake_change_ratio: float = 0.05, chain_timeout: float = 10, pool=None, **config_overrides):
        endpoints = (endpoint,) if isinstance(endpoint, str) else tuple(endpoint)
        self.config = replace(
            Config(
                chain=ChainConfig(endpoints=endpoints, timeout_seconds=chain_timeout),
                scope=scope,
                refresh_timeout_seconds=30,
                history=HistoryConfig(path=history_path or "", stake_change_ratio=stake_change_ratio),
                listen_address="127.0.0.1:0",
            ),
            **config_overrides,
        )
        self.app = build_exporter(self.config, with_history=history_path is not None, clock=clock, pool=pool)
        self.counter, self.session, self.refresher = self.app.counter, self.app.session, self.app.refresher
        self.server = self.app.server
        # The refresh thread runs as in production, but only when the test asks.
        self.app.start(scheduled=False)
        self.url = f"http://127.0.0.1:{self.server.port}"

    def refresh(self) -> bool:
        """One refresh on the exporter's refresh thread; True if it succeeded."""
        return self.refresher.refresh_now(timeout=120).up

    @property
    def snapshot(self):
        """The snapshot the exporter is serving (None before the first good refresh)."""
        data = self.refresher.current().data
        return data.snapshot if data is not None else None

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
        self.app.close()


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
