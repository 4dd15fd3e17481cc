"""A real Prometheus in a temporary directory, configured from the repository's prometheus.yml."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Optional, Sequence, Union

import yaml

REPO = Path(__file__).resolve().parent.parent
REPO_CONFIG = REPO / "prometheus.yml"
JOB = "bittensor-validator-exporter"


def derive_config(target: Union[str, Sequence[str]], interval: str = "1s") -> dict:
    """prometheus.yml with the same scrape job and rule files, scraping ``target`` every ``interval``.

    Several targets are scraped under the one job, as an HA pair of exporters would be.
    """
    targets = [target] if isinstance(target, str) else list(target)
    config = yaml.safe_load(REPO_CONFIG.read_text(encoding="utf-8"))
    config["global"] = {**config.get("global", {}), "scrape_interval": interval, "evaluation_interval": interval}
    # Rule globs are relative to prometheus.yml, and the derived file lives elsewhere.
    config["rule_files"] = [str(REPO / pattern) for pattern in config.get("rule_files", [])]
    # No Alertmanager runs in the tests.
    config.pop("alerting", None)
    jobs = config["scrape_configs"]
    assert [job["job_name"] for job in jobs] == [JOB], "prometheus.yml should scrape exactly the exporter job"
    jobs[0].update(scrape_interval=interval, scrape_timeout=interval, static_configs=[{"targets": targets}])
    return config



def wait_ready(name: str, url: str, process: subprocess.Popen, log, deadline: float) -> None:
    """Until ``url``/-/ready answers 200 (Prometheus and Alertmanager both serve it): the server
    offers no event to wait on, so this asks every 0.1 s; AssertionError with ``log()`` if the
    process exits or the deadline passes."""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{name} exited with {process.returncode}:\n{log()}")
        try:
            with urllib.request.urlopen(url + "/-/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{name} not ready in time:\n{log()}")

class PrometheusServer:
    """``prometheus`` on 127.0.0.1:``port`` with its own TSDB under ``workdir``; a context manager."""

    def __init__(self, binary: str, workdir: Path, config: dict, port: int):
        self.url = f"http://127.0.0.1:{port}"
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.log_path = workdir / "prometheus.log"
        self._args = [
            binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ]
        self._process: Optional[subprocess.Popen] = None

    def __enter__(self) -> "PrometheusServer":
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(self._args, stdout=log, stderr=subprocess.STDOUT)
        return self

    def __exit__(self, *exc) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, deadline: float) -> None:
        wait_ready("prometheus", self.url, self._process, self.log, deadline)

    def api(self, path: str, params: list[tuple[str, str]]) -> object:
        """GET /api/v1/<path>; the ``data`` of a successful answer, AssertionError otherwise."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:
            body = json.load(error)
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, at: Optional[float] = None) -> list[dict]:
        """Instant query at ``at`` (Unix time; default now): the vector's samples (a scalar counts as one sample)."""
        data = self.api("query", [("query", expr)] + ([("time", repr(at))] if at is not None else []))
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def label_values(self, label: str, match: Optional[str] = None) -> list[str]:
        return self.api(f"label/{label}/values", [("match[]", match)] if match else [])

    def rule_groups(self) -> list[dict]:
        return self.api("rules", [])["groups"]

    def alerts(self) -> list[dict]:
        """Active (pending and firing) alerts with their labels and expanded annotations."""
        return self.api("alerts", [])["alerts"]
