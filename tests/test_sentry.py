"""With ``SENTRY_DSN`` set, failed refreshes and unexpected exceptions arrive at Sentry as events.

A fake Sentry ingest server on loopback takes what the SDK really sends (HTTP,
compressed envelopes); the exporter is set up through its own code path
(``configure_logging`` then ``init_sentry``, as ``prepare_process`` does).
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.process_log import LogLines
import structlog

from exporter import logs
from exporter.logs import configure_logging
from exporter.sentry import init_sentry

sentry_sdk = pytest.importorskip("sentry_sdk")

REPO = Path(__file__).resolve().parent.parent
KEY = "fakepublickey0sentry"


class FakeSentry:
    """Accepts POSTs to /api/<project>/envelope/ and /api/<project>/store/; keeps what arrived."""

    def __init__(self) -> None:
        self.requests: list[dict] = []  # {"path", "auth", "body" (decoded bytes), "items": [(header, payload bytes)]}
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = _decode(body, self.headers.get("Content-Encoding", ""))
                parts = self.path.strip("/").split("/")
                ok = len(parts) == 3 and parts[0] == "api" and parts[2] in ("envelope", "store")
                if ok:
                    items = _envelope_items(body) if parts[2] == "envelope" else [({"type": "event"}, body)]
                    with fake._lock:
                        fake.requests.append({"path": self.path, "auth": self.headers.get("X-Sentry-Auth", ""),
                                              "body": body, "items": items})
                        fake._arrived.notify_all()
                self.send_response(200 if ok else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.dsn = f"http://{KEY}@127.0.0.1:{self.port}/1"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-sentry", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def payloads(self, kind: str = "event") -> list[bytes]:
        with self._lock:
            return [payload for r in self.requests for header, payload in r["items"] if header.get("type") == kind]

    def events(self) -> list[dict]:
        return [json.loads(payload) for payload in self.payloads("event")]

    def wait_for(self, predicate, timeout: float, give_up=lambda: False) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            events = self.events()
            if any(predicate(e) for e in events) or time.monotonic() > deadline or give_up():
                return events
            with self._arrived:
                self._arrived.wait(0.1)


def _decode(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "br":
        import brotli  # only if the SDK found it installed

        return brotli.decompress(body)
    assert encoding in ("", "identity"), encoding
    return body


def _envelope_items(body: bytes) -> list[tuple[dict, bytes]]:
    """An envelope: a header line, then items, each a header line and a payload
    (``length`` bytes when the header says, else up to the next newline)."""
    _, _, rest = body.partition(b"\n")
    items = []
    while rest.strip():
        line, _, rest = rest.partition(b"\n")
        header = json.loads(line)
        if "length" in header:
            payload, rest = rest[: header["length"]], rest[header["length"]:]
            rest = rest[1:] if rest.startswith(b"\n") else rest
        else:
            payload, _, rest = rest.partition(b"\n")
        items.append((header, payload))
    return items


def _exception_type(event: dict):
    values = (event.get("exception") or {}).get("values") or []
    return values[-1]["type"] if values else None


def _message(event: dict) -> str:
    return (event.get("logentry") or {}).get("formatted") or event.get("message") or ""


@pytest.fixture
def fake_sentry():
    server = FakeSentry()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def reporting(fake_sentry, monkeypatch):
    """Logging into a buffer; ``start()`` turns Sentry on as the CLI does. Every process-wide
    switch (structlog, stdlib logging, hooks, Sentry's client and scopes) is put back after."""
    saved = structlog.get_config()
    hooks = sys.excepthook, threading.excepthook, sys.unraisablehook
    root = logging.getLogger()
    level, exporter_level = root.level, logging.getLogger("exporter").level
    monkeypatch.setattr(logs, "_reporter", None)
    monkeypatch.setattr(logs, "_configured", None)
    buffer = io.StringIO()
    configure_logging("info", "json", buffer)

    def start(**kwargs) -> None:
        assert init_sentry({"SENTRY_DSN": fake_sentry.dsn}, **kwargs)

    try:
        yield start, buffer
    finally:
        sentry_sdk.flush(timeout=2)
        sentry_sdk.get_client().close(timeout=2)
        sentry_sdk.get_global_scope().set_client(None)
        for scope in (sentry_sdk.get_isolation_scope(), sentry_sdk.get_current_scope()):
            scope.clear()
        for handler in [h for h in root.handlers if h.get_name() == "exporter"]:
            root.removeHandler(handler)
        root.setLevel(level)
        logging.getLogger("exporter").setLevel(exporter_level)
        logging.captureWarnings(False)
        sys.excepthook, threading.excepthook, sys.unraisablehook = hooks
        structlog.configure(**saved)


def _no_key_in(server: FakeSentry) -> None:
    assert any(KEY in r["auth"] for r in server.requests), "the key authenticates, in the auth header"
    for kind in ("event", "transaction", "session", "client_report"):
        for payload in server.payloads(kind):
            assert KEY.encode() not in payload, f"the DSN's key is in an {kind}"


def test_failed_refreshes_and_exceptions_arrive_as_events(reporting, fake_sentry):
    start, buffer = reporting
    start()
    refresh, history = structlog.get_logger("exporter.refresh"), structlog.get_logger("exporter.history")
    refresh.info("refresh", block=7)  # a breadcrumb, not an event
    refresh.warning("refresh held back, needs confirmation", reason="invalid")  # nor this
    refresh.warning("refresh failed", reason="connection", error="could not connect to any endpoint",
                    endpoint="ws://127.0.0.1:9", duration_seconds=0.01)
    try:
        raise ZeroDivisionError("a bug")
    except ZeroDivisionError as failure:
        refresh.exception("refresh failed", reason="internal", error=repr(failure))
    history.error("history write failed; will retry next refresh", stage="commit", error="disk I/O error",
                  error_type="OperationalError")
    logging.getLogger("some.library").error("library failed: %s", "boom")  # stdlib: Sentry's own integration
    sentry_sdk.flush(timeout=5)

    events = fake_sentry.events()
    assert len(events) == 4, [_message(e) for e in events]
    by_message = {_message(e): e for e in events}
    connection = by_message["refresh failed: connection"]
    assert connection["level"] == "warning" and connection["logger"] == "exporter.refresh"
    assert connection["tags"]["reason"] == "connection" and connection["tags"]["endpoint"] == "ws://127.0.0.1:9"
    assert connection["extra"]["error"] == "could not connect to any endpoint"
    assert connection["fingerprint"] == ["exporter.refresh", "refresh failed", "connection"]
    assert [c["message"] for c in connection["breadcrumbs"]["values"]][-2:] == [
        "refresh", "refresh held back, needs confirmation"]
    internal = by_message["refresh failed: internal"]
    assert internal["level"] == "error" and internal["tags"]["reason"] == "internal"
    assert _exception_type(internal) == "ZeroDivisionError"
    frames = internal["exception"]["values"][-1]["stacktrace"]["frames"]
    assert frames[-1]["function"] == "test_failed_refreshes_and_exceptions_arrive_as_events"
    assert all("vars" not in frame for frame in frames), "no frame locals (they may hold endpoint credentials)"
    written = by_message["history write failed; will retry next refresh"]
    assert written["level"] == "error" and written["tags"] == {"stage": "commit", "error_type": "OperationalError"}
    library = by_message["library failed: boom"]
    assert library["level"] == "error" and library["logger"] == "some.library"
    _no_key_in(fake_sentry)
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert [line["event"] for line in lines][-6:] == [
        "refresh", "refresh held back, needs confirmation", "refresh failed", "refresh failed",
        "history write failed; will retry next refresh", "library failed: boom"]
    assert "ZeroDivisionError: a bug" in lines[-3]["exception"], "the log line still has its traceback"


def test_the_log_output_is_the_same_with_sentry_on(reporting, fake_sentry):
    start, buffer = reporting

    def emit() -> list[dict]:
        buffer.seek(0)
        buffer.truncate()
        structlog.get_logger("exporter.refresh").warning("refresh failed", reason="timeout", error="slow")
        try:
            raise KeyError("x")
        except KeyError:
            structlog.get_logger("exporter.refresh").exception("refresh failed", reason="internal")
        logging.getLogger("some.library").error("library failed", exc_info=(KeyError, KeyError("y"), None))
        logging.getLogger("some.library").warning("library warned")
        lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
        for line in lines:
            del line["timestamp"]
            line["exception"] = line.get("exception", "").splitlines()[-1:]  # line numbers differ
        return lines

    without = emit()
    start()
    with_sentry = emit()
    sentry_sdk.flush(timeout=5)
    assert len(fake_sentry.events()) == 3
    assert with_sentry == without


def test_a_thread_that_dies_is_one_event(reporting, fake_sentry):
    start, buffer = reporting
    start()

    def dies():
        raise RuntimeError("thread bug")

    thread = threading.Thread(target=dies, name="doomed")
    thread.start()
    thread.join()
    sentry_sdk.flush(timeout=5)
    events = fake_sentry.events()
    assert [_exception_type(e) for e in events] == ["RuntimeError"], "reported once, not once more by the log line"
    assert events[0]["exception"]["values"][-1]["mechanism"]["handled"] is False
    died = [json.loads(line) for line in buffer.getvalue().splitlines()][-1]
    assert died["event"] == "thread died of an uncaught exception" and died["thread"] == "doomed"


def test_an_uncaught_exception_in_the_main_thread_is_one_event(fake_sentry):
    code = (
        "import sys\n"
        "from exporter.logs import configure_logging\n"
        "from exporter.sentry import init_sentry\n"
        "configure_logging('info', 'json')\n"
        f"assert init_sentry({{'SENTRY_DSN': {fake_sentry.dsn!r}}})\n"
        "raise OSError('main died')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    died = [json.loads(line) for line in done.stderr.splitlines()]  # Sentry's at-exit line too
    assert any(line["event"] == "uncaught exception" and "OSError: main died" in line["exception"] for line in died)
    events = fake_sentry.events()  # sent at exit, before the process ended
    assert [_exception_type(e) for e in events] == ["OSError"], "reported once, not once more by the log line"
    assert events[0]["exception"]["values"][-1]["mechanism"] == {"type": "excepthook", "handled": False}


def test_the_same_failure_is_sent_first_then_once_per_interval(reporting, fake_sentry):
    start, _ = reporting
    now = [1000.0]
    start(interval_seconds=600, clock=lambda: now[0])
    refresh = structlog.get_logger("exporter.refresh")

    def fail(reason: str, times: int) -> None:
        for _ in range(times):
            refresh.warning("refresh failed", reason=reason, error="down")
            now[0] += 1

    fail("connection", 5)  # the first only
    fail("timeout", 2)  # another reason: its first
    for _ in range(3):
        try:
            raise ValueError("same bug")
        except ValueError:
            refresh.exception("refresh failed", reason="internal")
    now[0] += 600
    fail("connection", 2)  # the interval has passed: one more, counting the 4 held back
    sentry_sdk.flush(timeout=5)
    sent = [(_message(e), e["extra"].get("held_back_since_last_report")) for e in fake_sentry.events()]
    assert sent == [
        ("refresh failed: connection", None),
        ("refresh failed: timeout", None),
        ("refresh failed: internal", None),
        ("refresh failed: connection", 4),
    ]


def test_without_a_dsn_sentry_is_not_even_imported():
    code = (
        "import sys, structlog\n"
        "from exporter import logs\n"
        "from exporter.sentry import init_sentry\n"
        "logs.configure_logging('info', 'json')\n"
        "assert init_sentry({'SENTRY_DSN': ' '}) is False\n"
        "assert logs._reporter is None\n"
        "assert 'sentry_sdk' not in sys.modules, 'imported'\n"
        "assert len(structlog.get_config()['processors']) == 5\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=30)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_exporter_process_reports_a_failed_refresh(fake_sentry, tmp_path):
    port, dead = _free_port(), _free_port()
    env = {
        **os.environ,
        "BITTENSOR_EXPORTER_ENDPOINTS": f"ws://127.0.0.1:{dead}",
        "SENTRY_DSN": fake_sentry.dsn,
        "HOME": str(tmp_path),
        "PYTHONPATH": str(REPO),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "--web.listen-address", f"127.0.0.1:{port}", "--interval", "1s",
         "--log.format", "json"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    log = LogLines(proc.stdout)
    try:
        fake_sentry.wait_for(lambda e: (e.get("tags") or {}).get("reason") == "connection", timeout=20,
                             give_up=lambda: proc.poll() is not None)
        log.wait_for(lambda lines: sum('"refresh failed"' in line for line in lines) >= 2, timeout=20,
                     what="one more failed refresh (held back)")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        output = log.close()
    assert proc.returncode == 0, output
    lines = [json.loads(line) for line in output.splitlines()]  # every line JSON, Sentry's at-exit one too
    assert sum(line["event"] == "refresh failed" for line in lines) >= 2, output
    events = fake_sentry.events()
    assert [(_message(e), e["level"], e["tags"]["reason"]) for e in events] == [
        ("refresh failed: connection", "warning", "connection")], "one event for many failed refreshes"
    assert events[0]["release"].startswith("bittensor-validator-exporter@")
    _no_key_in(fake_sentry)
