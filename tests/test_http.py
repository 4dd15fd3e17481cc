"""HTTP endpoints: /metrics (plain and gzip), /healthz freshness, landing page, 404/405, --web.telemetry-path."""

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


# -- --web.telemetry-path --------------------------------------------------------------------------

def served(telemetry_path: str):
    from exporter.serving.routes import MetricsSource
    from exporter.serving.server import MetricsServer
    from tests.fakes import fake_publication

    server = MetricsServer("127.0.0.1", 0, MetricsSource(fake_publication), telemetry_path=telemetry_path)
    server.start()
    return server


def fetch(server, path: str, method: str = "GET") -> tuple[int, bytes]:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_metrics_are_served_on_the_telemetry_path_only():
    server = served("/exporter/metrics")
    try:
        status, body = fetch(server, "/exporter/metrics")
        assert status == 200 and body.startswith(b"# withdrawn"), body[:100]  # the fake publication, no data
        assert fetch(server, "/exporter/metrics?x=1")[0] == 200
        assert fetch(server, "/exporter/metrics", "HEAD") == (200, b"")
        assert fetch(server, "/metrics")[0] == 404, "the default path is not served once changed"
        assert fetch(server, "/exporter")[0] == 404 and fetch(server, "/exporter/metrics/")[0] == 404
        status, page = fetch(server, "/")
        assert status == 200 and b'<a href="/exporter/metrics">/exporter/metrics</a>' in page and b'"/metrics"' not in page
        assert fetch(server, "/healthz")[0] == 200
    finally:
        server.stop()


def test_telemetry_path_at_the_root_replaces_the_landing_page():
    server = served("/")
    try:
        status, body = fetch(server, "/")
        assert status == 200 and body.startswith(b"# withdrawn") and b"<html" not in body
        assert fetch(server, "/metrics")[0] == 404
    finally:
        server.stop()


def test_the_landing_page_escapes_the_telemetry_path():
    server = served("/a&b'c")
    try:
        status, page = fetch(server, "/")
        assert status == 200 and b'href="/a&amp;b&#x27;c"' in page
        assert fetch(server, "/a&b'c")[0] == 200
    finally:
        server.stop()


def test_an_unusable_telemetry_path_is_refused_before_binding():
    import pytest

    from exporter.serving.routes import MetricsSource
    from exporter.serving.server import MetricsServer
    from tests.fakes import fake_publication

    with pytest.raises(ValueError, match="reserved"):
        MetricsServer("127.0.0.1", 0, MetricsSource(fake_publication), telemetry_path="/healthz")
