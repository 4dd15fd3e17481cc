"""The stack end to end: simulated node -> two exporters (CLI) -> real Prometheus -> every dashboard query.

Two exporters run as the container does (the console entry point with the demo's
config file, only pointed at this test's node, port and temp dir), each with its own
history database: an HA pair. Prometheus runs with the repository's prometheus.yml,
rule files included, scraping both under the one job every second. The chain changes
between refreshes so rates, deltas and change counters have something to show. Then
every query of every panel and template variable runs through Prometheus's HTTP API:

- with both exporters picked, each must return data (no panel may be empty on the
  demo chain: tests.dashboard_queries.dashboard_chain adds what the scenario lacks);
- with each exporter alone, too, and every panel that aggregates over instances must
  show the same series and numbers with both as with one (no double counting); the
  per-exporter panels (exporter health) show each exporter's series exactly once;
- every variable offers what an operator picks: both exporters, the watched validators
  by alias (watched first on the detail page), the detail validator's subnets;
- every alert rule evaluates without error with two exporters, the per-validator alerts
  once per validator (no `instance` label), every alert keeps `job`, and no annotation
  fails to expand.
"""

from __future__ import annotations

import math
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.dashboard_queries import (
    DISSOLVING,
    MAX_TAKE,
    Query,
    dashboard_chain,
    load_dashboards,
    panels,
    parse_label_values,
    parse_query_result,
    queries,
    query_result_lines,
    substitute,
    variable_options,
    variable_query,
    variables,
)
from simnode.demo import DETAIL_NETUID, REPO, STALE_NETUID, change_chain, demo_config_document, demo_scope, stale_hotkey
from tests.external_tools import require_tool
from tests.harness import parse_exposition, series
from tests.prometheus_server import PrometheusServer, derive_config
from simnode import SimNode

EXPORTERS = 2
CHAIN_CHANGES = 3
BUDGET_SECONDS = 60  # the whole test, start to finish
# Alert groups whose alerts are about exporters: one per instance. Every other alert is
# about a validator, a subnet or a watched key and must fire once, whatever the exporters.
PER_EXPORTER_GROUPS = {"bittensor-exporter"}
RELATIVE_TOLERANCE = 1e-9


def free_ports(count: int) -> list[int]:
    """Distinct free ports (all sockets held open until every port is picked)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def exporter_config(node_url: str, workdir: Path, port: int) -> Path:
    """docker/demo-config.yaml with this test's node, a 1 s interval, a temp history and a free port."""
    workdir.mkdir(parents=True, exist_ok=True)
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
def exporter_process():
    """Start the exporter CLI with a config (log next to it); stop it at teardown."""
    started = []

    def start(config: Path) -> tuple[subprocess.Popen, Path]:
        log_path = config.parent / "exporter.log"
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


def test_every_dashboard_query_returns_data_and_two_exporters_count_once(tmp_path, exporter_process):
    prometheus_binary = require_tool("prometheus")
    deadline = time.monotonic() + BUDGET_SECONDS
    state = dashboard_chain()
    with SimNode(state) as node:
        *ports, prometheus_port = free_ports(EXPORTERS + 1)
        instances = [f"127.0.0.1:{port}" for port in ports]
        exporter_logs = [
            exporter_process(exporter_config(node.url, tmp_path / f"exporter-{i}", port))[1]
            for i, port in enumerate(ports)
        ]

        def logs() -> str:
            return "\n".join(f"{path.parent.name} log:\n{path.read_text(errors='replace')}" for path in exporter_logs)

        for instance in instances:
            wait_for(f"{instance}'s first refresh",
                     lambda: series(scrape(f"http://{instance}"), "bittensor_exporter_up") == 1, deadline, logs)

        with PrometheusServer(prometheus_binary, tmp_path, derive_config(instances), prometheus_port) as prometheus:
            prometheus.wait_ready(deadline)
            for step in range(CHAIN_CHANGES):
                block = change_chain(state, step)
                # Both exporters read every block: each records the same changes at the same blocks.
                wait_for(f"block {block} scraped from both exporters",
                         lambda: _instances_at(prometheus, block) == EXPORTERS, deadline, prometheus.log)
            # A few more scrapes after the last change: rate() needs two samples.
            wait_for("more scrapes", lambda: _scrapes(prometheus) >= 8, deadline, prometheus.log)

            at = time.time()  # every query at the same instant: with one exporter and with both
            picks = Picks(instances)
            failures = _check_variables(prometheus, picks, at)
            failures += _check_panels(prometheus, picks, at)
            failures += _check_rules(prometheus)
            failures += _check_liveness(prometheus, picks, at, state.head.number)
            failures += _check_chain_state(prometheus, picks, at)
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures)
    assert time.monotonic() < deadline, "the stack test ran over its time budget"


def _instances_at(prometheus: PrometheusServer, block: int) -> int:
    return len(prometheus.query(f"bittensor_chain_block >= {block}"))


def _scrapes(prometheus: PrometheusServer) -> float:
    result = prometheus.query("min(count_over_time(bittensor_exporter_up[1m]))")
    return float(result[0]["value"][1]) if result else 0


def _grafana_regex(values: list[str]) -> str:
    """A multi-value pick as Grafana writes it into a PromQL regex matcher (escaped, in a string literal)."""
    escaped = [re.sub(r"([\\^$*+?.()|{}\[\]])", r"\\\\\1", value) for value in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


class Picks:
    """The variables as an operator picks them: every exporter, or one; the demo's watched validators."""

    def __init__(self, instances: list[str]):
        self.instances = instances
        watch = demo_scope().watch
        self.watched = {key.hotkey: key.alias for key in watch}
        self.detail_hotkey = watch[0].hotkey

    def values(self, dashboard_uid: str, instances: list[str]) -> dict[str, str]:
        values = {"instance": _grafana_regex(instances), "netuid": ".*", "hotkey": ".*"}  # "All" (allValue .*)
        if dashboard_uid == "bittensor-validator-detail":
            values.update(hotkey=self.detail_hotkey, netuid=str(DETAIL_NETUID))
        return values


def _options(prometheus: PrometheusServer, variable: dict, values: dict[str, str], at: float) -> list[tuple[str, str]]:
    """(text, value) options the variable offers, as Grafana computes them."""
    query = substitute(variable_query(variable), values)
    expr = parse_query_result(query)
    if expr is not None:
        answers = query_result_lines(prometheus.query(expr, at))
    else:
        selector, label = parse_label_values(query)
        answers = prometheus.label_values(label, selector)
    return variable_options(answers, variable.get("regex", ""))


def _check_variables(prometheus: PrometheusServer, picks: Picks, at: float) -> list[str]:
    """Every variable offers what the panels are checked with, by the names an operator knows."""
    failures = []
    for name, dashboard in load_dashboards().items():
        values = picks.values(dashboard["uid"], picks.instances)
        for variable in variables(dashboard):
            if variable_query(variable) is None:
                continue
            where = f"{name} variable {variable['name']}"
            try:
                options = _options(prometheus, variable, values, at)
            except AssertionError as error:
                failures.append(f"{where}: {error}")
                continue
            offered = [value for _, value in options]
            texts = dict((value, text) for text, value in options)
            if variable["name"] == "instance":
                wanted = picks.instances
            elif variable["name"] == "hotkey":
                wanted = list(picks.watched)
                if [texts.get(h) for h in wanted] != list(picks.watched.values()):
                    failures.append(f"{where}: watched hotkeys not shown by alias: {options[:5]}")
                if not variable.get("multi"):
                    # Watched keys first (by alias), then every other validator in scope.
                    if set(offered[:len(wanted)]) != set(wanted):
                        failures.append(f"{where}: watched hotkeys do not come first: {offered[:5]}")
                    if len(offered) <= len(wanted):
                        failures.append(f"{where}: only the watched hotkeys offered: {offered}")
                elif set(offered) != set(wanted):
                    failures.append(f"{where}: offers {offered}, the watched hotkeys are {wanted}")
            elif values.get(variable["name"], ".*") != ".*":
                wanted = [values[variable["name"]]]
            else:
                wanted = []
            missing = [w for w in wanted if w not in offered]
            if missing or not offered:
                failures.append(f"{where}: {missing or 'nothing'} not offered (offers {offered})")
    return failures


def _by_labels(result: list[dict]) -> dict[frozenset, float]:
    return {frozenset(s["metric"].items()): float(s["value"][1]) for s in result}


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=RELATIVE_TOLERANCE, abs_tol=1e-9) or (math.isnan(a) and math.isnan(b))


def _check_panels(prometheus: PrometheusServer, picks: Picks, at: float) -> list[str]:
    """Every panel query returns finite data with both exporters, and counts them once."""
    failures, checked, compared = [], 0, 0
    for dashboard in load_dashboards().values():
        for query in queries(dashboard):
            where = f"{query.dashboard} / {query.panel} / {query.ref_id}"
            try:
                both, *alone = [_run(prometheus, query, picks.values(query.dashboard, pick), at)
                                for pick in [picks.instances] + [[i] for i in picks.instances]]
            except AssertionError as error:
                failures.append(f"{where}: query failed: {error}")
                continue
            checked += 1
            if not [v for v in both.values() if math.isfinite(v)]:
                failures.append(f"{where}: no data ({len(both)} samples, none finite)\n    {query.expr}")
                continue
            per_instance = any(dict(labels).get("instance") for labels in both)
            if per_instance:
                # One series per exporter, each exactly once.
                if set(both) != set().union(*alone):
                    failures.append(f"{where}: per-exporter series with both {sorted(map(dict, both), key=str)} "
                                    f"are not those of each alone")
                continue
            compared += 1
            for i, result in enumerate(alone):
                if set(result) != set(both):
                    failures.append(f"{where}: series differ with {picks.instances[i]} alone:\n"
                                    f"    both: {sorted(map(dict, both), key=str)[:3]}\n"
                                    f"    one:  {sorted(map(dict, result), key=str)[:3]}")
                    break
            else:
                for labels, value in both.items():
                    ones = [result[labels] for result in alone]
                    low, high = min(ones), max(ones)
                    if not (low <= value <= high or _close(value, low) or _close(value, high)):
                        failures.append(f"{where}: {dict(labels)} is {value} with both exporters, "
                                        f"{ones} with each alone (counted twice?)")
                        break
    assert checked > 120, f"only {checked} panel queries found"
    assert compared > 80, f"only {compared} queries aggregate over instances"
    return failures


def _run(prometheus: PrometheusServer, query: Query, values: dict[str, str], at: float) -> dict[frozenset, float]:
    expr = substitute(query.expr, values)
    try:
        return _by_labels(prometheus.query(expr, at))
    except AssertionError as error:
        raise AssertionError(f"{error}\n    {expr}") from None


def _panel_query(dashboard: str, title: str, header: str) -> Query:
    """The query of column ``header`` of table ``title`` (its only query when ``header`` is "")."""
    panel = next(p for p in panels(load_dashboards()[dashboard]) if p.get("title") == title)
    names = next(t for t in panel["transformations"] if t["id"] == "organize")["options"]["renameByName"]
    ref_id = next((name for name, shown in names.items() if shown == header), "Value #A").removeprefix("Value #")
    target = next(t for t in panel["targets"] if t["refId"] == ref_id)
    return Query(load_dashboards()[dashboard]["uid"], title, ref_id, target["expr"])


def _check_liveness(prometheus: PrometheusServer, picks: Picks, at: float, head: int) -> list[str]:
    """The answers, not only data: the demo's parent, which set weights at block 1 and which the subnet's
    first epoch marked inactive, is inactive in My validators' status, the only validator falling behind
    on the network, at the chain's head minus 1 blocks; the other watched validators, which set weights, are not.
    One inactive validator on the network, on that subnet."""
    stale, failures = stale_hotkey(), []

    def run(dashboard: str, title: str, header: str) -> dict[tuple, float]:
        query = _panel_query(dashboard, title, header)
        result = _run(prometheus, query, picks.values(query.dashboard, picks.instances), at)
        return {(dict(labels).get("hotkey"), dict(labels).get("netuid")): value for labels, value in result.items()}

    status = run("my-validators.json", "Status", "status")
    if status.get((stale, None)) != 3 or [key for key, level in status.items() if level == 3 and key != (stale, None)]:
        failures.append(f"status: the demo's parent must be inactive (3), no other watched validator: {status}")
    behind = run("network-overview.json", "Falling behind", "blocks since weights")
    if behind != {(stale, str(STALE_NETUID)): head - 1}:
        failures.append(f"falling behind: {behind}, expected the demo's parent on subnet {STALE_NETUID}, {head - 1} blocks")
    inactive = run("network-overview.json", "Activity by subnet", "inactive")
    if inactive.get((None, str(STALE_NETUID))) != 1 or sum(inactive.values()) != 1:
        failures.append(f"inactive by subnet: {inactive}, expected 1 on subnet {STALE_NETUID}")
    return failures


def _graph_query(dashboard: str, title: str, legend: str) -> Query:
    """The query of the line ``legend`` of graph (or stat) ``title``."""
    panel = next(p for p in panels(load_dashboards()[dashboard]) if p.get("title") == title and p["type"] != "row")
    target = next(t for t in panel["targets"] if t["legendFormat"] == legend)
    return Query(load_dashboards()[dashboard]["uid"], title, target["refId"], target["expr"])


def _check_chain_state(prometheus: PrometheusServer, picks: Picks, at: float) -> list[str]:
    """The answers of the chain-state panels on dashboard_chain's states (MaxChildkeyTake lowered to 655 of
    65,535 under the takes set before, subnet DISSOLVING mid-dissolution): the takes above it of the validators
    in scope, two on subnet 2 (the detail validator's 3,000 that change_chain's third step set, and a
    validator's 11,796, the old 18 % maximum) and two on subnet 4 (11,796 and 4,936); none on subnet 1 (its
    takes above it are of validators out of scope) nor on the subnet being dissolved, which is no subnet."""
    failures = []

    def run(query: Query) -> dict[frozenset, float]:
        return _run(prometheus, query, picks.values(query.dashboard, picks.instances), at)

    anomalies = {(dict(k)["rule"], dict(k)["netuid"], dict(k)["meaning"]): v
                 for k, v in run(_panel_query("network-overview.json", "Unusual chain states", "")).items()}
    wanted = {("take_above_max", "2", "take_above_max"): 2, ("take_above_max", "4", "take_above_max"): 2}
    if anomalies != wanted:
        failures.append(f"unusual chain states: {anomalies}, expected {wanted}")
    dissolving = {dict(k)["netuid"]: v for k, v in run(_panel_query("network-overview.json", "Subnets being dissolved", "")).items()}
    if dissolving != {str(DISSOLVING): 1}:
        failures.append(f"subnets being dissolved: {dissolving}, expected subnet {DISSOLVING}")
    # The detail validator's take on the detail subnet: stored 3,000 (above the maximum), paid whole.
    take = 3000 / 65535
    for legend in ("effective take", "stored take"):
        shown = list(run(_graph_query("validator-detail.json", "Childkey take", legend)).values())
        if len(shown) != 1 or not _close(shown[0], take) or not shown[0] > MAX_TAKE / 65535:
            failures.append(f"validator detail {legend}: {shown}, expected {take} (above the maximum {MAX_TAKE / 65535})")
    by_pair = {(dict(k)["hotkey"], dict(k)["netuid"]): v
               for k, v in run(_panel_query("my-validators.json", "My validators by subnet", "unusual chain state")).items()}
    detail = {netuid: v for (hotkey, netuid), v in by_pair.items() if hotkey == picks.detail_hotkey}
    if detail != {"1": 0, str(DETAIL_NETUID): 2, "4": 2}:
        failures.append(f"my validators, unusual chain state of the detail validator by subnet: {detail}")
    return failures


def _check_rules(prometheus: PrometheusServer) -> list[str]:
    """The alert rules of alerting/*.rules.yml evaluate without errors with two exporters; per-validator
    alerts fire once per validator; every annotation expands."""
    failures = [
        f"rule {group['name']}/{rule['name']}: {rule.get('lastError')}"
        for group in prometheus.rule_groups()
        for rule in group["rules"]
        if rule.get("health") != "ok"
    ]
    group_of = {rule["name"]: group["name"] for group in prometheus.rule_groups() for rule in group["rules"]}
    seen = set()
    for alert in prometheus.alerts():
        labels = alert["labels"]
        name = labels["alertname"]
        if group_of.get(name) not in PER_EXPORTER_GROUPS and "instance" in labels:
            failures.append(f"alert {name} fires per exporter: {labels}")
        if name != "Watchdog" and labels.get("job") != "bittensor-validator-exporter":
            failures.append(f"alert {name} lost its job label: {labels}")
        key = frozenset(labels.items())
        if key in seen:
            failures.append(f"alert {name} fires twice: {labels}")
        seen.add(key)
        for field, text in alert.get("annotations", {}).items():
            if "error expanding" in text or "<no value>" in text:
                failures.append(f"alert {name} {field}: {text}")
    return failures
