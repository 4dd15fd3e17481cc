"""TLS, basic auth and HTTP hardening of the metrics server, with real clients and sockets."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import ssl
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import bcrypt
import pytest

from exporter.config import ConfigError
from exporter.serving.server import MetricsServer, MetricsSource
from tests.fakes import fake_publication
from tests.test_config import run_main
from exporter.serving.web_config import load_web_config

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


def test_tls_handshake_and_basic_auth(certificate):
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


@pytest.mark.parametrize("text, needle", [
    ("basic_auth_users:\n  prometheus: plaintext\n", "bcrypt"),
    ("tls_server_config:\n  cert_file: server.crt\n", "key_file"),
    ("tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n", "cannot load"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: SSL3\n", "min_version"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: Maybe\n", "client_auth_type"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n", "client_ca_file"),
    ("tls_config:\n  cert_file: x\n", "unknown key"),
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


def test_slow_clients_are_cut_off_and_do_not_block_scrapes():
    server = serve(request_timeout=1)
    try:
        slow = socket.create_connection(("127.0.0.1", server.port))
        slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finishes its headers
        assert get(f"http://127.0.0.1:{server.port}/metrics")[0] == 200, "others are served meanwhile"
        slow.settimeout(5)
        assert slow.recv(1024) == b"", "the server closes it after its request timeout"
        slow.close()
    finally:
        server.stop()


def test_oversized_headers_are_rejected():
    server = serve()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(150)) + b"\r\n")
            assert s.recv(64).startswith(b"HTTP/1.1 431")
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n")
            assert s.recv(64).startswith(b"HTTP/1.1 414")
    finally:
        server.stop()


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
