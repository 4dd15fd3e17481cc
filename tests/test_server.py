"""The HTTP server against a fake publication: what a scrape gets, with no chain behind it."""

from __future__ import annotations

import gzip
import select
import selectors
import socket
import struct
import threading
import time
import urllib.request

import pytest
from structlog.testing import capture_logs

from exporter.config import ScopeConfig
from exporter.serving.publication import render
from exporter.serving.routes import MetricsSource
from exporter.serving.server import MetricsServer
from exporter.serving.web_config import WebConfig
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


# -- the protocol, on raw sockets ----------------------------------------------------------------


class Raw:
    """One client connection that reads whole responses (head and Content-Length body)."""

    def __init__(self, port: int, host: str = "127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=5)
        self.pending = b""

    def send(self, data: bytes) -> "Raw":
        self.sock.sendall(data)
        return self

    def _more(self) -> bytes:
        data = self.sock.recv(1 << 20)
        if not data:
            raise EOFError("closed")
        return data

    def response(self, head_only: bool = False) -> tuple[int, dict, bytes]:
        while b"\r\n\r\n" not in self.pending:
            self.pending += self._more()
        head, _, self.pending = self.pending.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        length = 0 if head_only else int(headers.get("content-length", 0))
        while len(self.pending) < length:
            self.pending += self._more()
        body, self.pending = self.pending[:length], self.pending[length:]
        return int(status_line.split()[1]), headers, body

    def closed(self) -> bool:
        """True once the server has closed the connection (waits up to the socket timeout)."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


def request(path: str = "/metrics", method: str = "GET", version: str = "HTTP/1.1", extra: str = "") -> bytes:
    return f"{method} {path} {version}\r\nHost: x\r\n{extra}\r\n".encode()


@pytest.fixture
def server():
    servers = []

    def start(publication=None, **kwargs) -> MetricsServer:
        source = kwargs.pop("source", None) or MetricsSource(lambda: publication or fake_publication(data=DATA),
                                                             live=lambda: b"# live\n")
        made = MetricsServer(kwargs.pop("host", "127.0.0.1"), 0, source, **kwargs)
        made.start()
        servers.append(made)
        return made

    yield start
    for made in servers:
        made.stop()


def test_keep_alive_pipelining_head_and_connection_close(server):
    port = server().port
    client = Raw(port)
    try:
        client.send(request() + request(method="HEAD") + request("/nope") + request("/metrics", "POST"))
        status, headers, body = client.response()
        assert status == 200 and body.startswith(DATA.plain) and "connection" not in headers
        status, headers, _ = client.response(head_only=True)
        assert status == 200 and int(headers["content-length"]) == len(body), "HEAD: the length GET would send"
        assert client.response()[0] == 404
        status, headers, _ = client.response()
        assert status == 405 and headers["allow"] == "GET, HEAD"
        client.send(request("/healthz", extra="Connection: close\r\n"))
        status, headers, body = client.response()
        assert (status, headers["connection"], body) == (200, "close", b"ok\n")
        assert client.closed()
    finally:
        client.close()


def test_http_1_0_closes_unless_asked_and_a_request_body_ends_the_connection(server):
    port = server().port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request("/healthz", version="HTTP/1.0"))
        assert s.makefile("rb").read().startswith(b"HTTP/1.1 200 OK\r\n"), "read to EOF: the server closed"
    client = Raw(port)
    client.send(request("/healthz", version="HTTP/1.0", extra="Connection: keep-alive\r\n"))
    assert client.response()[1]["connection"] == "keep-alive"
    client.send(request("/metrics", "POST", extra="Content-Length: 5\r\n") + b"GET /")  # a body is never read
    status, headers, _ = client.response()
    assert (status, headers["connection"]) == (405, "close") and client.closed()
    client.close()


@pytest.mark.parametrize("data, status", [
    (b"GET /metrics\r\n\r\n", 400),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)) + b"\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\n\r\n", 505),
    (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", 400),
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(101)) + b"\r\n", 431),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"y" * 1000) for i in range(80)) + b"\r\n", 431),
])
def test_bad_requests_get_one_answer_and_a_close(server, capfd, data, status):
    client = Raw(server().port)
    try:
        with capture_logs() as logs:
            client.send(data)
            assert client.response()[0] == status
            assert client.closed()
    finally:
        client.close()
    assert len(logs) <= 1
    assert "Traceback" not in capfd.readouterr().err


def test_client_errors_are_at_most_one_log_line_never_a_traceback(server, capfd):
    big = render(build_snapshot(chain_read(), ScopeConfig(min_stake_weight=0)), b"# x\n" * 2_000_000)  # ~8 MB
    port = server(fake_publication(data=big)).port
    with capture_logs() as logs:
        for _ in range(3):  # hang up mid-response, with unread input, and with a reset
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(request() + b"more after the request")
            s.recv(1000)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"\x00\xff" * 100)
            s.shutdown(socket.SHUT_WR)
        assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200  # the server is fine and the errors are logged
    assert len(logs) <= 4 and all("\n" not in str(entry) for entry in logs)
    assert "Traceback" not in capfd.readouterr().err


def test_a_client_that_stops_reading_is_cut_off_at_the_response_deadline(server):
    big = render(build_snapshot(chain_read(), ScopeConfig(min_stake_weight=0)), b"# x\n" * 4_000_000)  # ~16 MB
    port = server(fake_publication(data=big), response_timeout=0.5).port
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(request())
        began = time.monotonic()
        assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200, "others are served meanwhile"
        poller = select.poll()
        poller.register(s, 0)  # only an error or hang-up: the client never reads
        assert poller.poll(5000), "the server did not give up"
        assert 0.4 < time.monotonic() - began < 3
        with pytest.raises(ConnectionResetError):  # reset: what was still queued for it is dropped
            while s.recv(1 << 20):
                pass


def test_events_run_on_a_worker_thread_and_never_block_scrapes(server):
    release = threading.Event()
    threads = []

    def events(query: str):
        threads.append(threading.current_thread().name)
        release.wait(10)  # a slow SQLite read
        return 200, b'{"events": []}'

    port = server(source=MetricsSource(fake_publication, events=events)).port
    slow = Raw(port).send(request("/api/v1/events?limit=1"))
    try:
        assert get(f"http://127.0.0.1:{port}/metrics")[0] == 200, "a scrape is answered while the query runs"
        release.set()
        status, headers, body = slow.response()
        assert (status, headers["content-type"], body) == (200, "application/json", b'{"events": []}')
        assert threads and threads[0] != "http"
    finally:
        slow.close()


def test_an_exporter_error_is_a_500_and_one_line(server, capfd):
    def events(query: str):
        raise RuntimeError("database is gone")

    port = server(source=MetricsSource(fake_publication, events=events)).port
    with capture_logs() as logs:
        assert get(f"http://127.0.0.1:{port}/api/v1/events")[0] == 500
    assert [entry["event"] for entry in logs] == ["http response failed"]
    assert "Traceback" not in capfd.readouterr().err


def test_ipv6_and_configured_headers(server):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        made = server(host="::1", web=WebConfig(headers={"X-Frame-Options": "deny"}))
    except OSError:
        pytest.skip("no IPv6 loopback")
    client = Raw(made.port, host="::1")
    status, headers, _ = client.send(request("/")).response()
    assert status == 200 and headers["x-frame-options"] == "deny"
    client.close()


def test_stop_is_prompt_with_connections_open(server):
    big = render(build_snapshot(chain_read(), ScopeConfig(min_stake_weight=0)), b"# x\n" * 4_000_000)
    made = server(fake_publication(data=big))
    idle = [Raw(made.port) for _ in range(20)]
    stalled = Raw(made.port).send(request())  # mid-response: it never reads
    selectors_wait(stalled.sock, 5)
    began = time.monotonic()
    made.stop()
    assert time.monotonic() - began < 1
    assert all(c.closed() for c in idle)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", made.port), timeout=1)
    for c in [*idle, stalled]:
        c.close()


def selectors_wait(sock: socket.socket, timeout: float) -> None:
    """Wait until ``sock`` has something to read."""
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ)
        assert selector.select(timeout), "nothing arrived"
