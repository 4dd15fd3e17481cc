"""The stack end to end: simulated node -> exporter (CLI) -> real Prometheus -> every dashboard query.

The exporter runs as the container does (the console entry point with the
demo's config file, only pointed at this test's node, port and temp dir);
Prometheus runs with the repository's prometheus.yml, rule files included,
scraping every second. The chain changes between refreshes so rates, deltas
and change counters have something to show. Then every query of every panel
and template variable runs through Prometheus's HTTP API and must return data.
"""

from __future__ import annotations

import math
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.dashboard_queries import (
    HISTORY_METRICS,
    HISTORY_PENDING,
    load_dashboards,
    metric_names,
    parse_label_values,
    queries,
    substitute,
    variable_query,
    variables,
)
from simnode.demo import DETAIL_NETUID, REPO, change_chain, demo_chain, demo_config_document, detail_hotkey
from tests.external_tools import require_tool
from tests.harness import parse_exposition, series
from tests.prometheus_server import PrometheusServer, derive_config
from simnode import SimNode

# (dashboard uid, panel title) -> why that panel has no data in this scenario.
# History panels are added at run time while the history metrics are absent.
EXPECTED_EMPTY: dict[tuple[str, str], str] = {}
CHAIN_CHANGES = 3
BUDGET_SECONDS = 45  # the whole test, start to finish


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def exporter_config(node_url: str, workdir: Path, port: int) -> Path:
    """docker/demo-config.yaml with this test's node, a 1 s interval, a temp history and a free port."""
    document = demo_config_document()
    document["chain"]["endpoints"] = [node_url]
    document.setdefault("refresh", {})["interval_seconds"] = 1
    document.setdefault("history", {})["path"] = str(workdir / "history.db")
    document.setdefault("web", {})["listen_address"] = f"127.0.0.1:{port}"
    path = workdir / "exporter.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def scrape(url: str) -> dict:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        return parse_exposition(response.read().decode())


def wait_for(what: str, check, deadline: float, logs=lambda: ""):
    """Poll ``check()`` until it returns something truthy; bounded by ``deadline``."""
    while time.monotonic() < deadline:
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{logs()}")


@pytest.fixture
def exporter_process(tmp_path):
    """Start the exporter CLI with a config; stop it (and keep its log) at teardown."""
    started = []

    def start(config: Path) -> tuple[subprocess.Popen, Path]:
        log_path = tmp_path / "exporter.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "exporter", "--config.file", str(config), "--log.format", "console"],
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
            )
        started.append(process)
        return process, log_path

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_every_dashboard_query_returns_data(tmp_path, exporter_process):
    prometheus_binary = require_tool("prometheus")
    deadline = time.monotonic() + BUDGET_SECONDS
    state = demo_chain()
    with SimNode(state) as node:
        port = free_port()
        exporter_url = f"http://127.0.0.1:{port}"
        _, exporter_log = exporter_process(exporter_config(node.url, tmp_path, port))
        logs = lambda: f"exporter log:\n{exporter_log.read_text(errors='replace')}"  # noqa: E731
        wait_for("the exporter's first refresh", lambda: series(scrape(exporter_url), "bittensor_exporter_up") == 1, deadline, logs)

        config = derive_config(f"127.0.0.1:{port}")
        with PrometheusServer(prometheus_binary, tmp_path, config, free_port()) as prometheus:
            prometheus.wait_ready(deadline)
            for step in range(CHAIN_CHANGES):
                block = change_chain(state, step)
                wait_for(f"block {block} scraped", lambda: _scraped_block(prometheus) >= block, deadline, prometheus.log)
            # A few more scrapes after the last change: rate() needs two samples.
            wait_for("more scrapes", lambda: _scrapes(prometheus) >= 8, deadline, prometheus.log)

            exported = {name for name, _ in scrape(exporter_url)}
            values = _variable_values(prometheus, port)
            failures = _check_variables(prometheus, values) + _check_panels(prometheus, values, exported)
            failures += _check_rules(prometheus)
    assert not failures, "\n".join(failures)
    assert time.monotonic() < deadline, "the stack test ran over its time budget"


def _scraped_block(prometheus: PrometheusServer) -> float:
    result = prometheus.query("max(bittensor_chain_block)")
    return float(result[0]["value"][1]) if result else -1


def _scrapes(prometheus: PrometheusServer) -> float:
    result = prometheus.query("count_over_time(bittensor_exporter_up[1m])")
    return float(result[0]["value"][1]) if result else 0


def _variable_values(prometheus: PrometheusServer, port: int) -> dict[str, str]:
    """Dashboard variables as an operator would pick them: the demo's watched validator."""
    return {"hotkey": detail_hotkey(), "netuid": str(DETAIL_NETUID), "instance": f"127.0.0.1:{port}"}


def _check_variables(prometheus: PrometheusServer, values: dict[str, str]) -> list[str]:
    """Every label_values() variable must offer the value the panels are checked with."""
    failures = []
    for name, dashboard in load_dashboards().items():
        for variable in variables(dashboard):
            query = variable_query(variable)
            if query is None:
                continue
            selector, label = parse_label_values(substitute(query, values))
            try:
                offered = prometheus.label_values(label, selector)
            except AssertionError as error:
                failures.append(f"{name} variable {variable['name']}: {error}")
                continue
            if values.get(variable["name"]) not in offered:
                failures.append(f"{name} variable {variable['name']}: {values.get(variable['name'])!r} not among {offered}")
    return failures


def _check_panels(prometheus: PrometheusServer, values: dict[str, str], exported: set[str]) -> list[str]:
    """Every panel query returns at least one finite sample, unless expected empty."""
    failures, checked = [], 0
    for dashboard in load_dashboards().values():
        for query in queries(dashboard):
            reason = EXPECTED_EMPTY.get((query.dashboard, query.panel))
            missing_history = (metric_names(query.expr) & HISTORY_METRICS) - exported
            if missing_history:
                reason = HISTORY_PENDING
            expr = substitute(query.expr, values)
            where = f"{query.dashboard} / {query.panel} / {query.ref_id}"
            try:
                result = prometheus.query(expr)
            except AssertionError as error:
                failures.append(f"{where}: query failed: {error}\n    {expr}")
                continue
            finite = [s for s in result if math.isfinite(float(s["value"][1]))]
            if reason is None and not finite:
                failures.append(f"{where}: no data ({len(result)} samples, none finite)\n    {expr}")
            checked += 1
    assert checked > 50, f"only {checked} panel queries found"
    return failures


def _check_rules(prometheus: PrometheusServer) -> list[str]:
    """The alert rules Prometheus loaded from alerting/*.rules.yml evaluate without errors."""
    return [
        f"rule {group['name']}/{rule['name']}: {rule.get('lastError')}"
        for group in prometheus.rule_groups()
        for rule in group["rules"]
        if rule.get("health") == "err"
    ]
