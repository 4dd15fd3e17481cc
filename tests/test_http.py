"""HTTP endpoints: /metrics (plain and gzip), /healthz freshness, landing page, 404/405."""

from __future__ import annotations

import gzip

from exporter.config import ScopeConfig
from tests.harness import parse_exposition, series


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_gzip_and_plain_carry_the_same_series(tricky_node, exporter_factory):
    exporter = exporter_factory(tricky_node, scope=ScopeConfig(min_stake_weight=100))
    assert exporter.refresh()
    status, headers, plain = exporter.get("/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "Content-Encoding" not in headers
    status, headers, packed = exporter.get("/metrics", {"Accept-Encoding": "deflate, gzip;q=0.8"})
    assert headers["Content-Encoding"] == "gzip" and len(packed) < len(plain)
    unpacked = gzip.decompress(packed)
    a, b = parse_exposition(plain.decode()), parse_exposition(unpacked.decode())
    # process metrics (CPU, memory) move between two scrapes; everything else is identical
    moving = {k for k in a if k[0].startswith("process_")}
    assert {k: v for k, v in a.items() if k not in moving} == {k: v for k, v in b.items() if k not in moving}
    assert int(headers["Content-Length"]) == len(packed)


def test_gzip_refused_with_q_zero(tricky_node, exporter_factory):
    exporter = exporter_factory(tricky_node)
    _, headers, _ = exporter.get("/metrics", {"Accept-Encoding": "gzip;q=0"})
    assert "Content-Encoding" not in headers


def test_metrics_before_the_first_refresh_has_only_self_metrics(tricky_node, exporter_factory):
    exporter = exporter_factory(tricky_node)
    samples = exporter.scrape(gzip_encoding=True)
    assert series(samples, "bittensor_exporter_up") == 0
    assert not any(name.startswith("bittensor_validator_") for name, _ in samples)


def test_healthz_follows_freshness(tricky_node, exporter_factory):
    clock = FakeClock()
    exporter = exporter_factory(tricky_node, clock=clock, interval_seconds=60)
    assert exporter.get("/healthz")[0] == 503, "no refresh yet"
    assert exporter.refresh()
    assert exporter.get("/healthz")[0] == 200
    clock.now += 3 * 60  # exactly at the staleness limit: still fresh
    assert exporter.get("/healthz")[0] == 200
    clock.now += 1
    status, _, body = exporter.get("/healthz")
    assert status == 503 and b"stale" in body


def test_landing_page_head_404_and_405(tricky_node, exporter_factory):
    exporter = exporter_factory(tricky_node)
    status, headers, body = exporter.get("/")
    assert status == 200 and b'href="/metrics"' in body
    status, headers, body = exporter.get("/metrics", method="HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0
    assert exporter.get("/nope")[0] == 404
    assert exporter.get("/metrics", method="POST")[0] == 405
    assert exporter.get("/metrics", method="DELETE")[0] == 405
