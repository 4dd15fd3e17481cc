"""Secrets (endpoint API keys, the Sentry DSN) never reach the logs, and no key material is read."""

from __future__ import annotations

import json
import re
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.process_log import LogLines

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_endpoint_credentials_and_sentry_dsn_stay_out_of_logs(tmp_path):
    port, dead = free_port(), free_port()
    env = {
        **os.environ,
        "BITTENSOR_EXPORTER_ENDPOINTS": f"ws://operator:hunter2@127.0.0.1:{dead}/rpc?apikey=TOPSECRETKEY",
        "SENTRY_DSN": "https://SENTRYSECRET@o0.ingest.invalid/0",
        "HOME": str(tmp_path),  # nothing may be read from (or written to) a home directory
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "--web.listen-address", f"127.0.0.1:{port}", "--interval", "1s",
         "--log.level", "debug", "--log.format", "json"],
        cwd=tmp_path, env={**env, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    log = LogLines(proc.stdout)
    try:
        # Three failed refreshes logged: the first two are published (each is logged just before).
        log.wait_for(lambda lines: sum('"refresh failed"' in line for line in lines) >= 3, timeout=30,
                     what="three failed refreshes")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        assert re.search(r'bittensor_exporter_refresh_errors_total\{reason="connection"\} [23]\.0', metrics), metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        output = log.close()
    assert "refresh failed" in output
    for line in output.splitlines():
        assert json.loads(line), f"with --log.format json every line is JSON: {line!r}"
    for secret in ("hunter2", "TOPSECRETKEY", "SENTRYSECRET", "operator:"):
        assert secret not in output, f"{secret} leaked into the logs"
        assert secret not in metrics, f"{secret} leaked into /metrics"
    assert f'endpoint="ws://127.0.0.1:{dead}"' in metrics, "endpoints are labelled by scheme, host and port only"
    assert not (tmp_path / ".bittensor").exists(), "no wallet, key or cache read from or written to the home directory"
    assert proc.returncode == 0
