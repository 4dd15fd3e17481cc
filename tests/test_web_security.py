"""TLS, basic auth and HTTP hardening of the metrics server, with real clients and sockets."""

from __future__ import annotations

import base64
import gzip
import http.client
import os
import resource
import selectors
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

import bcrypt
import pytest
from structlog.testing import capture_logs

from exporter.config import ScopeConfig
from exporter.config_error import ConfigError
from exporter.serving.publication import render
from exporter.serving.admission import Admission, client_key
from exporter.serving.routes import MetricsSource
from exporter.serving.server import MAX_CONNECTIONS, MetricsServer
from exporter.serving import basic_auth as basic_auth_module
from exporter.serving.basic_auth import BasicAuth
from exporter.serving.web_config import load_web_config
from exporter.snapshot.builder import build_snapshot
from tests.fakes import fake_publication
from tests.test_config import run_main
from tests.test_snapshot import chain_read

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> Path:
    if shutil.which("openssl") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("openssl is needed to make a test certificate")
        pytest.skip("openssl not installed")
    directory = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(directory / "server.key"), "-out", str(directory / "server.crt")],
        check=True, capture_output=True,
    )
    return directory


def web_config(directory: Path, *, tls: bool = True, users: bool = True) -> Path:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode().replace("$2b$", "$2y$")
    lines = []
    if tls:
        lines += ["tls_server_config:", "  cert_file: server.crt", "  key_file: server.key", "  min_version: TLS12"]
    if users:
        lines += ["basic_auth_users:", f"  prometheus: '{hashed}'"]
    lines += ["http_server_config:", "  headers:", "    X-Content-Type-Options: nosniff"]
    path = directory / "web.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def serve(web=None, **kwargs) -> MetricsServer:
    source = MetricsSource(fake_publication)
    server = MetricsServer("127.0.0.1", 0, source, load_web_config(str(web)) if web else load_web_config(None), **kwargs)
    server.start()
    return server


def get(url: str, *, user=None, password=None, context=None):
    request = urllib.request.Request(url)
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers)


def client_context(certificate: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate / "server.crt"))


def test_tls_handshake_and_basic_auth(certificate, capfd):
    server = serve(web_config(certificate))
    url = f"https://127.0.0.1:{server.port}/metrics"
    try:
        context = client_context(certificate)
        status, headers = get(url, user="prometheus", password=PASSWORD, context=context)
        assert status == 200 and headers["X-Content-Type-Options"] == "nosniff"
        status, headers = get(url, user="prometheus", password="wrong", context=context)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
        assert get(url, user="nobody", password=PASSWORD, context=context)[0] == 401
        assert get(url, context=context)[0] == 401
        assert get(f"https://127.0.0.1:{server.port}/healthz", context=context)[0] == 200, "health checks need no password"
        with socket.create_connection(("127.0.0.1", server.port)) as raw, context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
        with pytest.raises(urllib.error.URLError):  # the server's certificate is not trusted by default
            urllib.request.urlopen(url, timeout=10)
        with pytest.raises((ConnectionError, OSError)):  # plain HTTP to the TLS port gets nothing
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10).read()
        assert get(f"https://127.0.0.1:{server.port}/healthz", context=context)[0] == 200
    finally:
        server.stop()
    assert "Traceback" not in capfd.readouterr().err


def test_a_large_response_over_tls_arrives_whole_in_both_encodings(certificate):
    data = render(build_snapshot(chain_read(), ScopeConfig(min_stake_weight=0)), b"# padding\n" * 300_000)  # 3 MB
    publication = fake_publication(data=data)
    server = MetricsServer("127.0.0.1", 0, MetricsSource(lambda: publication),
                           load_web_config(str(web_config(certificate, users=False))))
    server.start()
    try:
        connection = http.client.HTTPSConnection("127.0.0.1", server.port, timeout=10,
                                                 context=client_context(certificate))
        for encoding in ("identity", "gzip"):  # two requests on one kept-alive TLS connection
            connection.request("GET", "/metrics", headers={"Accept-Encoding": encoding})
            response = connection.getresponse()
            body = response.read()
            if encoding == "gzip":
                body = gzip.decompress(body)
            assert response.status == 200 and body == data.plain + b"# status\n"
        connection.close()
    finally:
        server.stop()


def test_basic_auth_without_tls(certificate):
    server = serve(web_config(certificate, tls=False))
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        assert get(url)[0] == 401
        assert get(url, user="prometheus", password=PASSWORD)[0] == 200
        assert get(url, user="prometheus", password=PASSWORD)[0] == 200, "second time from the cache"
        assert get(url, user="prometheus", password=PASSWORD + "x")[0] == 401
    finally:
        server.stop()


def header_get(url: str, authorization: str) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": authorization}), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as error:
        return error.code


def test_basic_auth_scheme_is_case_insensitive_and_long_passwords_never_match(tmp_path):
    password = "p" * 72  # bcrypt's limit: it would ignore anything after
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    server = serve(path)
    url = f"http://127.0.0.1:{server.port}/metrics"

    def token(user: str, secret: str) -> str:
        return base64.b64encode(f"{user}:{secret}".encode()).decode()

    try:
        for scheme in ("Basic", "basic", "BASIC"):
            assert header_get(url, f"{scheme} {token('prometheus', password)}") == 200, scheme
        assert header_get(url, f"Basic {token('prometheus', password + 'x')}") == 401, "73 bytes: refused, not truncated"
        assert header_get(url, f"Basic {token('prometheus', password + 'x' * 1000)}") == 401
        assert header_get(url, f"Bearer {token('prometheus', password)}") == 401
        assert header_get(url, f"Basic {base64.b64encode(b'prometheus').decode()}") == 401, "no colon"
        assert header_get(url, "Basic %%%") == 401
    finally:
        server.stop()


def _bcrypt_runs(monkeypatch) -> list[int]:
    """The cost of every bcrypt run from here on (the real runs, counted)."""
    runs: list[int] = []
    checkpw = bcrypt.checkpw

    def counted(password: bytes, hashed: bytes) -> bool:
        runs.append(int(hashed.split(b"$")[2]))
        return checkpw(password, hashed)

    monkeypatch.setattr(basic_auth_module.bcrypt, "checkpw", counted)
    return runs


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_an_unknown_user_and_every_wrong_or_right_password_cost_the_same_bcrypt_work(monkeypatch):
    """Users hashed at different costs: every check runs bcrypt once at each of them, so neither an
    unknown user nor a user's cost shows in the time of the answer (an unknown user was checked
    at the highest cost alone, a wrong password at its user's)."""
    auth = BasicAuth({
        "cheap": bcrypt.hashpw(b"one", bcrypt.gensalt(rounds=4)),
        "dear": bcrypt.hashpw(b"two", bcrypt.gensalt(rounds=6)),
        "also-cheap": bcrypt.hashpw(b"three", bcrypt.gensalt(rounds=4)),
    })
    runs = _bcrypt_runs(monkeypatch)
    cases = [("nobody", "one", False), ("cheap", "wrong", False), ("dear", "wrong", False),
             ("also-cheap", "one", False), ("cheap", "one", True), ("dear", "two", True), ("also-cheap", "three", True)]
    for user, password, allowed in cases:
        runs.clear()
        assert auth.allows(_basic(user, password)) is allowed, (user, password)
        assert sorted(runs) == [4, 6], (user, password, runs)
    runs.clear()
    assert auth.allows(_basic("cheap", "one")) is True and runs == [], "a password verified before: no bcrypt"
    assert auth.allows(_basic("nobody", "one")) is False and sorted(runs) == [4, 6], "an unknown user still pays"


def test_with_one_cost_a_check_is_one_bcrypt_run(monkeypatch):
    auth = BasicAuth({"prometheus": bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=5)),
                      "grafana": bcrypt.hashpw(b"other", bcrypt.gensalt(rounds=5))})
    runs = _bcrypt_runs(monkeypatch)
    for user, password in (("nobody", "secret"), ("prometheus", "wrong"), ("prometheus", "secret")):
        runs.clear()
        auth.allows(_basic(user, password))
        assert runs == [5], (user, runs)


@pytest.mark.parametrize("text, needle", [
    ("basic_auth_users:\n  prometheus: plaintext\n", "bcrypt"),
    ("tls_server_config:\n  cert_file: server.crt\n", "key_file"),
    ("tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n", "cannot load"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: SSL3\n", "min_version"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: Maybe\n", "client_auth_type"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n", "client_ca_file"),
    ("tls_config:\n  cert_file: x\n", "unknown key"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  tls_version: TLS13\n", "tls_server_config.tls_version: unknown key (allowed: cert_file"),
    ("http_server_config:\n  http3: true\n", "http_server_config.http3: unknown key"),
    ("http_server_config:\n  http2: maybe\n", "http2: must be true or false"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS13\n  max_version: TLS12\n", "min_version TLS13 is newer than max_version TLS12"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  max_version: TLS11\n", "older than the default min_version"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_BOGUS]\n", "unknown cipher suite 'TLS_BOGUS'"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  cipher_suites: [ECDHE-RSA-AES128-GCM-SHA256]\n", "use Go's names"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n", "TLS 1.3 suites cannot be configured"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS13\n  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n", "remove cipher_suites or lower min_version"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  cipher_suites: TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n", "cipher_suites: must be a list"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n", "available in this Python's"),
    # An RSA certificate cannot serve an ECDSA suite: every TLS 1.2 handshake would fail.
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n", "no TLS12 handshake is possible"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  curve_preferences: [CurveP256, X25519]\n", "one curve only"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  curve_preferences: [P-256]\n", "unknown curve 'P-256' (one of CurveP256, CurveP384, CurveP521, X25519)"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  curve_preferences: [X25519MLKEM768]\n", "unknown curve"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  prefer_server_cipher_suites: 1\n", "prefer_server_cipher_suites: must be true or false"),
])
def test_bad_web_config_is_refused(certificate, tmp_path, text, needle):
    for name in ("server.crt", "server.key"):
        shutil.copy(certificate / name, tmp_path / name)
    path = tmp_path / "web.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_web_config(str(path))
    assert needle in str(caught.value)
    result = run_main("check-config", "--web.config.file", str(path))
    assert result.returncode == 2 and needle in result.stderr


BILLION_LAUGHS = b"a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + b"".join(
    b"%s: &%s [%s]\n" % (bytes([c]), bytes([c]), b", ".join([b"*" + bytes([c - 1])] * 9)) for c in range(ord("b"), ord("j"))
) + b"basic_auth_users: *i\n"


@pytest.mark.parametrize("content, needle", [
    (b"\xff\xfe" + "basic_auth_users: {}\n".encode("utf-16-le"), "UTF-16"),
    ("basic_auth_users:\n  prometheus: caf\xe9\n".encode("latin-1"), "not UTF-8"),
    (b"- a\n- b\n", "must be a mapping"),
    (b"basic_auth_users: [a, b]\n", "basic_auth_users: must be a mapping"),
    (b"http_server_config: 5\n", "http_server_config: must be a mapping"),
    (b"tls_server_config:\n  cert_file: [a]\n  key_file: {k: v}\n  min_version: [TLS12]\n", "cert_file: must be a non-empty string"),
    (b"tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: {x: 1}\n", "client_auth_type: must be one of"),
    (b"1: x\n", "keys must be strings"),
    (BILLION_LAUGHS, "aliases"),
    (b"basic_auth_users: " + b"[" * 100_000, "nest"),  # libyaml stops first: "nesting depth"
    (b"basic_auth_users: " + b"[" * 40 + b"]" * 40, "nested more than 32 levels"),
    (b"basic_auth_users:\n  prometheus: $2y$10$short\n", "not a valid bcrypt hash"),
    (b"basic_auth_users:\n  'a:b': $2y$04$" + b"a" * 53 + b"\n", "cannot contain ':'"),
    (b'http_server_config:\n  headers:\n    X-A: "a\\r\\nSet-Cookie: x=1"\n', "one line"),
    (b"http_server_config:\n  headers:\n    Content-Length: 5\n", "set by the exporter"),
    (b"http_server_config:\n  headers:\n    'Bad Name': x\n", "not a valid header name"),
    (b"a" * (1 << 20) + b": 1\n", "larger than"),
])
def test_a_bad_web_config_is_one_short_message_and_exit_code_2(tmp_path, content, needle):
    path = tmp_path / "web.yml"
    path.write_bytes(content)
    result = run_main("check-config", "--web.config.file", str(path))
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr and "Traceback" not in result.stderr and len(result.stderr) < 1000, result.stderr


@pytest.mark.parametrize("path, needle", [("/dev/zero", "larger than"), ("/", "cannot read")])
def test_a_web_config_that_is_no_file_is_refused_quickly(path, needle):
    if not os.path.exists(path):
        pytest.skip(f"no {path}")
    result = run_main("check-config", "--web.config.file", path)
    assert result.returncode == 2 and needle in result.stderr and "Traceback" not in result.stderr


# -- slow clients ----------------------------------------------------------------------------------

SLOW_PLAIN = 300  # idle or trickling one header line at a time, on the plain port
SLOW_TLS = 48  # idle before the handshake, trickling after it, and handshaking late, on the TLS port
HEAD_DEADLINE = 1.0  # seconds; the server's default is 10, the test's is short to stay quick
TRICKLE_EVERY = 0.2


class SlowClient:
    def __init__(self, port: int, kind: str, context: Optional[ssl.SSLContext] = None):
        self.kind = kind
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.opened = time.monotonic()
        self.closed: Optional[float] = None
        self.answered = b""
        self.context = context
        if kind == "trickle-tls":
            self.handshake()
        elif kind == "trickle":
            self.sock.sendall(b"GET /metrics HTTP/1.1\r\n")
        self.sock.setblocking(False)

    def handshake(self) -> None:
        self.sock.settimeout(5)
        self.sock = self.context.wrap_socket(self.sock, server_hostname="127.0.0.1")
        self.sock.sendall(b"GET /metrics HTTP/1.1\r\n")
        self.sock.setblocking(False)
        self.kind = "trickle-tls"

    def trickle(self) -> None:
        if self.kind.startswith("trickle"):
            try:
                self.sock.send(b"X-Slow: 1\r\n")
            except (ssl.SSLWantWriteError, BlockingIOError):
                pass
            except OSError:
                self.closed = self.closed or time.monotonic()

    def readable(self) -> None:
        try:
            data = self.sock.recv(4096)
        except (ssl.SSLWantReadError, BlockingIOError):
            return  # a TLS 1.3 session ticket, not data
        except OSError:
            data = b""
        if data:
            self.answered += data
        else:
            self.closed = self.closed or time.monotonic()


def _hold_slow_clients(clients: list[SlowClient], late: list[SlowClient], done: threading.Event) -> None:
    """Trickle a header line to each every TRICKLE_EVERY s, until the server has closed them all;
    ``late`` ones start their TLS handshake when most of the head deadline has passed."""
    try:
        _trickle(clients, late)
    finally:
        done.set()


def _trickle(clients: list[SlowClient], late: list[SlowClient]) -> None:
    with selectors.DefaultSelector() as selector:
        for client in clients:
            selector.register(client.sock, selectors.EVENT_READ, client)
        began = time.monotonic()
        next_trickle = began
        give_up = began + HEAD_DEADLINE + 5
        while any(c.closed is None for c in clients) and time.monotonic() < give_up:
            now = time.monotonic()
            if late and now >= late[0].opened + 0.6 * HEAD_DEADLINE:
                for client in late:
                    selector.unregister(client.sock)
                    try:
                        client.handshake()
                    except OSError:
                        client.closed = time.monotonic()
                        continue
                    selector.register(client.sock, selectors.EVENT_READ, client)
                late = []
            if now >= next_trickle:
                for client in clients:
                    if client.closed is None:
                        client.trickle()
                next_trickle = now + TRICKLE_EVERY
            for key, _ in selector.select(timeout=max(0.0, min(next_trickle - time.monotonic(), 0.05))):
                client = key.data
                if client.closed is None:
                    client.readable()
                    if client.closed is not None:
                        selector.unregister(client.sock)


def _descriptors_for(count: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < count:
        if hard != resource.RLIM_INFINITY and hard < count:
            pytest.skip(f"needs {count} file descriptors, the limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (count, hard))


def test_slow_and_idle_clients_cannot_hold_the_server(certificate):
    """Hundreds of slowloris connections, plain and TLS: every scrape meanwhile is answered at once,
    and each slow client is cut off at the head deadline counted from accept (TLS handshake included)."""
    _descriptors_for(2 * (SLOW_PLAIN + SLOW_TLS) + 200)
    # All from 127.0.0.1, scrapers too: the per-client limit (its own test) is lifted to test the deadlines.
    plain = serve(request_timeout=HEAD_DEADLINE, max_connections_per_client=MAX_CONNECTIONS)
    secure = serve(web_config(certificate, users=False), request_timeout=HEAD_DEADLINE,
                   max_connections_per_client=MAX_CONNECTIONS)
    context = client_context(certificate)
    clients: list[SlowClient] = []
    try:
        clients += [SlowClient(plain.port, "idle" if i % 3 == 0 else "trickle") for i in range(SLOW_PLAIN)]
        late = [SlowClient(secure.port, "idle", context) for _ in range(SLOW_TLS // 3)]
        clients += late
        clients += [SlowClient(secure.port, "idle", context) for _ in range(SLOW_TLS // 3)]
        clients += [SlowClient(secure.port, "trickle-tls", context) for _ in range(SLOW_TLS - 2 * (SLOW_TLS // 3))]
        done = threading.Event()
        holder = threading.Thread(target=_hold_slow_clients, args=(clients, late, done), daemon=True)
        holder.start()
        scrapers = [http.client.HTTPConnection("127.0.0.1", plain.port, timeout=5),
                    http.client.HTTPSConnection("127.0.0.1", secure.port, timeout=5, context=context)]
        latencies, statuses = [], []
        while not done.is_set():  # a Prometheus-like client on each port, on kept-alive connections
            for scraper in scrapers:
                began = time.monotonic()
                scraper.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
                response = scraper.getresponse()
                response.read()
                latencies.append(time.monotonic() - began)
                statuses.append(response.status)
            done.wait(0.02)
        holder.join(timeout=10)
        for scraper in scrapers:
            scraper.close()
    finally:
        plain.stop()
        secure.stop()
        for client in clients:
            client.sock.close()
    assert len(statuses) >= 20 and set(statuses) == {200}, statuses
    # Generous for a loaded 2-CPU machine: the failure this guards against is a
    # scrape queued behind slow clients (a 503, or a wait of whole deadlines).
    assert max(latencies) < 2.0, f"slowest scrape {max(latencies):.3f} s"
    assert all(c.answered == b"" for c in clients), "a slow client never gets an answer"
    held = sorted(c.closed - c.opened for c in clients if c.closed is not None)
    assert len(held) == len(clients), f"{len(clients) - len(held)} slow clients were never cut off"
    assert 0.9 * HEAD_DEADLINE <= held[0] and held[-1] <= HEAD_DEADLINE + 1.5, (held[0], held[-1])


def test_connection_cap_answers_503_instead_of_queueing_forever():
    server = serve(max_connections=4, request_timeout=5)
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(4)]
    try:
        for s in idle:  # make sure each holds a slot: a complete request on a kept-alive connection
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            s.settimeout(5)
            assert s.recv(1024).startswith(b"HTTP/1.1 200")
        status, _ = get(f"http://127.0.0.1:{server.port}/metrics")
        assert status == 503
    finally:
        for s in idle:
            s.close()
    # once they are gone, scrapes are served again
    for _ in range(50):
        if get(f"http://127.0.0.1:{server.port}/metrics")[0] == 200:
            break
        threading.Event().wait(0.05)
    else:
        pytest.fail("slots were not released")
    server.stop()


def _from(source: str, port: int) -> socket.socket:
    """A connection to the server from loopback address ``source`` (another client, as the server sees it)."""
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    except OSError as error:  # only Linux routes all of 127/8 to loopback
        pytest.skip(f"cannot connect from {source}: {error}")


def test_one_client_holding_connections_leaves_every_scrape_of_another_served():
    """One host (127.0.0.2) opens 150 connections and reopens each one refused; Prometheus (127.0.0.1)
    scrapes meanwhile: all 60 of its scrapes are answered 200. Without the per-client limit the host
    took every connection and 59 of 60 scrapes failed with 503."""
    server = serve(max_connections=100, max_connections_per_client=20, request_timeout=30)
    held, refused = [], 0
    stop = threading.Event()

    def hog() -> None:
        nonlocal refused
        while not stop.is_set():
            if len(held) >= 150:
                stop.wait(0.01)
                continue
            s = _from("127.0.0.2", server.port)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # kept alive: holds a slot if given one
            if s.recv(12) == b"HTTP/1.1 503":
                refused += 1
                s.close()  # and opens another at once
            else:
                held.append(s)

    _from("127.0.0.2", server.port).close()  # skips here, before any thread, where 127.0.0.2 is not loopback
    thread = threading.Thread(target=hog, daemon=True)
    try:
        with capture_logs() as logs:
            thread.start()
            while refused < 50:  # the host holds its 20 and keeps trying
                threading.Event().wait(0.01)
            statuses = [get(f"http://127.0.0.1:{server.port}/metrics")[0] for _ in range(60)]
        assert statuses == [200] * 60
        assert len(held) == 20, "the host holds its limit, no more"
        warnings = [e for e in logs if e["log_level"] == "warning"]
        assert warnings == [{"event": "http connections refused: one client holds its limit", "client": "127.0.0.2",
                             "limit": 20, "setting": "web.max_connections_per_client", "log_level": "warning"}], \
            "one line a minute, however many refusals"
    finally:
        stop.set()
        thread.join(timeout=10)
        for s in held:
            s.close()
        server.stop()


@pytest.mark.parametrize("peer, key", [
    (("203.0.113.7", 5000), "203.0.113.7"),
    (("::ffff:203.0.113.7", 5000, 0, 0), "203.0.113.7"),
    (("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 5000, 0, 0), "2001:db8:1:2::/64"),
    (("2001:db8:1:2::1", 5001, 0, 0), "2001:db8:1:2::/64"),
    (("fe80::1%eth0", 5000, 0, 2), "fe80::/64"),
])
def test_a_client_is_its_ipv4_address_or_its_ipv6_64(peer, key):
    assert client_key(peer) == key


def test_admission_counts_connections_in_all_and_by_client():
    admission = Admission(total=5, per_client=2)
    assert [admission.admit("a") for _ in range(3)] == [None, None, "client"]
    assert [admission.admit("b"), admission.admit("b"), admission.admit("c")] == [None, None, None]
    assert admission.admit("d") == "total" and admission.open == 5
    admission.release("a")
    assert admission.held("a") == 1 and admission.admit("a") is None
    for client in ("a", "a", "b", "b", "c"):
        admission.release(client)
    assert admission.open == 0 and admission._held == {}, "nothing kept of clients gone"


# -- TLS options, applied ------------------------------------------------------------------------

def tls_server(certificate: Path, tmp_path: Path, options: str) -> MetricsServer:
    for name in ("server.crt", "server.key"):
        shutil.copy(certificate / name, tmp_path / name)
    path = tmp_path / "web.yml"
    path.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n" + options)
    return serve(path)


def handshake(server: MetricsServer, certificate: Path, *, versions=None, ciphers=None, curve=None) -> tuple[str, str]:
    """(protocol, cipher) a client so restricted gets; ssl.SSLError or OSError when it gets none."""
    context = client_context(certificate)
    if versions:
        context.minimum_version, context.maximum_version = versions
    if ciphers:
        context.set_ciphers(ciphers)
    if curve:
        context.set_ecdh_curve(curve)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert tls.recv(12) == b"HTTP/1.1 200"
        return tls.version(), tls.cipher()[0]


TLS12 = (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2)
TLS13 = (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3)


def test_min_version_tls13_refuses_a_tls12_client(certificate, tmp_path):
    server = tls_server(certificate, tmp_path, "  min_version: TLS13\n")
    try:
        assert handshake(server, certificate)[0] == "TLSv1.3"
        with pytest.raises((ssl.SSLError, OSError)):
            handshake(server, certificate, versions=TLS12)
    finally:
        server.stop()


def test_max_version_tls12_refuses_a_tls13_only_client(certificate, tmp_path):
    server = tls_server(certificate, tmp_path, "  max_version: TLS12\n")
    try:
        assert handshake(server, certificate)[0] == "TLSv1.2"
        with pytest.raises((ssl.SSLError, OSError)):
            handshake(server, certificate, versions=TLS13)
    finally:
        server.stop()


def test_cipher_suites_by_their_go_names_are_the_only_tls12_suites(certificate, tmp_path):
    server = tls_server(certificate, tmp_path, "  cipher_suites:\n    - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\n"
                                                "    - TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256\n")
    try:
        assert handshake(server, certificate, versions=TLS12) == ("TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384")
        assert handshake(server, certificate, versions=TLS12, ciphers="ECDHE-RSA-CHACHA20-POLY1305")[1] == \
            "ECDHE-RSA-CHACHA20-POLY1305"
        with pytest.raises((ssl.SSLError, OSError)):
            handshake(server, certificate, versions=TLS12, ciphers="ECDHE-RSA-AES128-GCM-SHA256")
        assert handshake(server, certificate)[0] == "TLSv1.3", "TLS 1.3 keeps its own suites, as in Go"
    finally:
        server.stop()


@pytest.mark.parametrize("prefer, chosen", [("true", "ECDHE-RSA-AES128-GCM-SHA256"), ("false", "ECDHE-RSA-AES256-GCM-SHA384")])
def test_prefer_server_cipher_suites_decides_whose_order_wins(certificate, tmp_path, prefer, chosen):
    server = tls_server(certificate, tmp_path, f"  prefer_server_cipher_suites: {prefer}\n  cipher_suites:\n"
                                                "    - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n"
                                                "    - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\n")
    try:
        client_order = "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256"
        assert handshake(server, certificate, versions=TLS12, ciphers=client_order)[1] == chosen
    finally:
        server.stop()


@pytest.mark.parametrize("versions", [TLS12, TLS13], ids=["TLS12", "TLS13"])
def test_curve_preferences_restrict_key_exchange_to_that_curve(certificate, tmp_path, versions):
    server = tls_server(certificate, tmp_path, "  curve_preferences: [CurveP384]\n")
    try:
        assert handshake(server, certificate, versions=versions, curve="secp384r1")
        with pytest.raises((ssl.SSLError, OSError)):
            handshake(server, certificate, versions=versions, curve="prime256v1")
        assert handshake(server, certificate, versions=versions), "a default client offers P-384 too"
    finally:
        server.stop()


def test_tls10_is_refused_when_openssl_would_never_negotiate_it(certificate, tmp_path):
    """exporter-toolkit accepts TLS10; here it is refused at load when this OpenSSL cannot
    do it at all, rather than accepted and failing every old client's handshake."""
    for name in ("server.crt", "server.key"):
        shutil.copy(certificate / name, tmp_path / name)
    path = tmp_path / "web.yml"
    path.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS10\n")
    try:
        server = serve(path)
    except ConfigError as error:
        assert "no TLS10 handshake is possible" in str(error) and "security level" in str(error)
        return
    try:  # this OpenSSL does TLS 1.0: then it is served
        old = (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1)
        assert handshake(server, certificate, versions=old, ciphers="ALL:@SECLEVEL=0")[0] == "TLSv1"
    finally:
        server.stop()
