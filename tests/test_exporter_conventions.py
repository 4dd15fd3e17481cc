"""The Prometheus exporter conventions of issue 12 in the real process: --web.telemetry-path,
logfmt logs at --log.level warn, and build_info's labels, as an operator sees them."""

from __future__ import annotations

import http.client
import os
import platform
import signal
import subprocess
import sys
from pathlib import Path

from exporter import __version__
from tests.process_log import LogLines
from tests.harness import parse_exposition
from tests.test_logs import parse_logfmt
from tests.test_new_user import free_port

REPO = Path(__file__).resolve().parent.parent


def get(port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_telemetry_path_logfmt_and_build_info_in_the_real_process(tmp_path):
    port, dead = free_port(), free_port()  # nothing listens on ``dead``: every refresh fails at once
    config = tmp_path / "config.yaml"
    config.write_text(f"chain:\n  endpoints: [ws://127.0.0.1:{dead}]\nhistory:\n  path: {tmp_path / 'history.db'}\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "--config.file", str(config), "--web.listen-address", f"127.0.0.1:{port}",
         "--web.telemetry-path", "/exporter/metrics", "--log.format", "logfmt", "--log.level", "warn",
         "--interval", "1s"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), "BITTENSOR_EXPORTER_REVISION": "0123abc"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    log = LogLines(proc.stderr)
    try:
        # The server is up before the first refresh; two failed refreshes logged: the first is published.
        log.wait_for(lambda lines: sum('msg="refresh failed"' in line for line in lines) >= 2, timeout=30,
                     what="two failed refreshes")
        status, body = get(port, "/exporter/metrics")
        assert status == 200
        samples = parse_exposition(body.decode())
        build = {labels: value for (name, labels), value in samples.items() if name == "bittensor_exporter_build_info"}
        assert build == {frozenset({("version", __version__), ("revision", "0123abc"),
                                    ("python_version", platform.python_version())}): 1}
        assert get(port, "/metrics")[0] == 404
        status, page = get(port, "/")
        assert status == 200 and b'href="/exporter/metrics"' in page
        assert b'bittensor_exporter_refresh_errors_total{reason="connection"} 0.0' not in body
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        err = log.close()
    assert proc.returncode == 0, err
    lines = [parse_logfmt(line) for line in err.splitlines()]
    assert lines, "a failed refresh is logged at warn"
    for pairs in lines:
        assert [key for key, _ in pairs][:3] == ["ts", "level", "msg"], pairs
        assert dict(pairs)["level"] in ("warn", "error", "critical"), "--log.level warn drops info lines"
    assert any(dict(pairs)["msg"] == "refresh failed" and dict(pairs)["level"] == "warn" for pairs in lines), err
