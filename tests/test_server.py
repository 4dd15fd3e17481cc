"""The HTTP server against a fake publication: what a scrape gets, with no chain behind it."""

from __future__ import annotations

import gzip
import urllib.request

import pytest

from exporter.config import ScopeConfig
from exporter.serving.publication import render
from exporter.serving.server import MetricsServer, MetricsSource
from exporter.snapshot.builder import build_snapshot
from tests.fakes import fake_publication
from tests.test_snapshot import chain_read

DATA = render(build_snapshot(chain_read(), ScopeConfig(min_stake_weight=100)), b"# counters\n")


@pytest.fixture
def serve():
    servers = []

    def start(publication, now=None):
        source = MetricsSource(lambda: publication, live=lambda: b"# live\n",
                               **({"clock": lambda: now} if now is not None else {}))
        server = MetricsServer("127.0.0.1", 0, source)
        server.start()
        servers.append(server)
        return f"http://127.0.0.1:{server.port}"

    yield start
    for server in servers:
        server.stop()


def get(url, headers=None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def test_metrics_are_snapshot_then_status_then_live_in_both_encodings(serve):
    url = serve(fake_publication(data=DATA, status=b"# status\n"))
    status, headers, plain = get(url + "/metrics")
    assert status == 200 and plain == DATA.plain + b"# status\n# live\n"
    status, headers, packed = get(url + "/metrics", {"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip" and gzip.decompress(packed) == plain


def test_a_withdrawn_snapshot_serves_the_withdrawn_status(serve):
    old = fake_publication(data=DATA, last_success=1000.0)
    url = serve(old, now=1000.0 + old.withdraw_after_seconds + 1)
    assert get(url + "/metrics")[2] == b"# withdrawn\n# live\n"
    assert get(url + "/healthz")[0] == 503


def test_healthz_follows_the_publication(serve):
    assert get(serve(fake_publication(fresh=True)) + "/healthz")[0] == 200
    assert get(serve(fake_publication(fresh=False)) + "/healthz")[0] == 503


def test_stop_is_prompt_and_idempotent():
    server = MetricsServer("127.0.0.1", 0, MetricsSource(fake_publication))
    server.start()
    server.stop()
    server.stop()
