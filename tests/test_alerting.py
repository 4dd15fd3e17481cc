"""Alert rules and the Alertmanager example, checked by the real promtool and amtool."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "alerting" / "bittensor.rules.yml"
RULE_TESTS = REPO / "alerting" / "bittensor.rules.test.yml"
ALERTMANAGER = REPO / "alertmanager" / "alertmanager.yml"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed (.ci/run installs it with apt)")
        pytest.skip(f"{name} not installed (Debian package: prometheus / prometheus-alertmanager)")
    return path


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def test_rules_are_valid():
    result = run(tool("promtool"), "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass():
    result = run(tool("promtool"), "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def all_rules() -> list[dict]:
    return [dict(r, group=g["name"]) for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def rules() -> list[dict]:
    """The alerting rules."""
    return [r for r in all_rules() if "alert" in r]


def recordings() -> list[dict]:
    return [r for r in all_rules() if "record" in r]


def rule_tests() -> list[dict]:
    return yaml.safe_load(RULE_TESTS.read_text())["tests"]


# Exporter-level alerts are per exporter instance; every other alert is one per validator.
PER_INSTANCE_GROUP = "bittensor-exporter"
SEVERITIES = ("critical", "warning", "info", "none")
RECORDED = re.compile(r"\bbittensor:[a-z_:]+")
RAW = re.compile(r"\bbittensor_[a-z_]+")
# Families with a series per validator or per edge: 8,000 and more at mainnet scale.
NETWORK_WIDE = re.compile(r"\bbittensor_(validator|childkey)_[a-z_]+")
SERIES = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?$")
INSTANCE = re.compile(r'\binstance="(?P<value>[^"]*)"')


def without_instance(series: str) -> str:
    return INSTANCE.sub("", series).replace("{,", "{").replace(",,", ",").replace(",}", "}")


def has_two_instances(case: dict) -> bool:
    """Two input series that differ only in `instance` (an HA pair)."""
    seen: dict[str, set[str]] = {}
    for s in case.get("input_series", []):
        found = INSTANCE.search(s["series"])
        if found:
            seen.setdefault(without_instance(s["series"]), set()).add(found["value"])
    return any(len(instances) >= 2 for instances in seen.values())


def test_every_alert_has_a_test_and_the_texts_operators_need():
    tested = {t["alertname"] for case in rule_tests() for t in case.get("alert_rule_test", [])}
    for rule in rules():
        assert rule["alert"] in tested, f"{rule['alert']} has no promtool test"
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]
        severity = rule["labels"]["severity"]
        # a literal, or a template choosing between literals by the alert's magnitude
        assert severity in SEVERITIES or (
            "{{" in severity and set(re.sub(r"{{.*?}}", " ", severity).split()) <= set(SEVERITIES)), rule["alert"]


def test_every_alert_is_tested_firing_not_firing_across_a_restart_and_as_an_ha_pair():
    firing, silent, restarted, paired = set(), set(), set(), set()
    for case in rule_tests():
        # `stale`: the series go stale, as they do while an exporter restarts
        restart = any("stale" in str(s["values"]).split() for s in case.get("input_series", []))
        pair = has_two_instances(case)
        for t in case.get("alert_rule_test", []):
            (firing if t.get("exp_alerts") else silent).add(t["alertname"])
            if restart:
                restarted.add(t["alertname"])
            if pair:
                paired.add(t["alertname"])
    for rule in rules():
        name = rule["alert"]
        assert name in firing, f"{name}: no promtool case where it fires"
        assert name in paired, f"{name}: no promtool case with two exporter instances (an HA pair)"
        if name == "Watchdog":
            continue  # vector(1): always fires
        assert name in silent, f"{name}: no promtool case where it must not fire (exp_alerts: [])"
        if name != "BittensorExporterDown":  # `up` never goes stale: its restart case is up == 0 for a scrape
            assert name in restarted, f"{name}: no promtool case across an exporter restart (stale series)"


def test_per_validator_rules_aggregate_instances_away():
    """An HA pair gives two copies of every series: per-validator rules must not alert twice.
    An alert reads the exporter's series aggregated, or recorded series that are."""
    for rule in all_rules():
        name = rule.get("alert") or rule["record"]
        if rule["group"] == PER_INSTANCE_GROUP or name == "Watchdog":
            continue
        expr = rule["expr"].replace(" ", "")
        if RAW.search(expr):
            assert "without(instance" in expr or "by(" in expr, f"{name}: aggregate with max without(instance)"
        else:
            assert RECORDED.search(expr), f"{name}: reads neither the exporter's series nor recorded ones"


def _bridged(expr: str, name: str) -> bool:
    """Every read of ``name`` in ``expr`` is through a range (``..._over_time(name[`` or ``{``)."""
    reads = len(re.findall(re.escape(name) + r"(?![a-z_:])", expr))
    ranged = len(re.findall(r"_over_time\(\s*" + re.escape(name) + r"(\{[^}]*\})?\[", expr))
    return reads == ranged


def test_alerts_bridge_an_exporter_restart():
    """While an exporter restarts its series go stale (an instant read finds nothing for a
    minute or two). Every alert reads the exporter's series through a range, directly or
    through recorded series: a recorded series read from an instant read is read through a
    range (last_over_time) by every alert, or feeds another recording rule that is."""
    instant: set[str] = set()  # recorded series that lapse with a restart
    for rule in all_rules():
        if rule["group"] == PER_INSTANCE_GROUP:
            continue
        expr = rule["expr"]
        name = rule.get("alert") or rule["record"]
        if name == "bittensor:watched_hotkey:alias":
            continue  # the alias scraped last, or else the one of the last hour: never lapses
        lapsing = [m for m in set(RAW.findall(expr)) if not _bridged(expr, m)]
        lapsing += [r for r in instant if r in expr and not _bridged(expr, r)]
        if "record" in rule:
            if lapsing:
                instant.add(rule["record"])
        else:
            assert not lapsing, f"{name} reads {lapsing} at the instant: a restart would resolve it"


def test_recorded_series_are_defined_and_narrowed_to_the_watched_validators():
    """Every recorded series an alert reads is recorded in the same group, before it (rules of a
    group run in order), and each one reading a family with a series per validator or edge joins
    the watched hotkeys: ranges, offsets and templates then work on a few series only."""
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        defined: set[str] = set()
        for rule in group["rules"]:
            name = rule.get("alert") or rule["record"]
            used = set(RECORDED.findall(rule["expr"]))
            if "record" in rule:
                used.discard(rule["record"])  # a :since carries its own last sample on
                if rule["record"] != "bittensor:watched_hotkey:alias" and NETWORK_WIDE.search(rule["expr"]):
                    assert "bittensor:watched_hotkey:alias" in rule["expr"], f"{name}: narrow to the watched hotkeys"
                defined.add(rule["record"])
            assert used <= defined, f"{name} reads {sorted(used - defined)} before they are recorded"


def test_alerts_keep_their_state_in_recorded_series():
    """`for:` and keep_firing_for live in Prometheus' memory: a restart loses them
    (docs/alerts-guide.md). Alerts hold and keep through recorded series."""
    for rule in rules():
        assert "for" not in rule and "keep_firing_for" not in rule, rule["alert"]


def as_ha_pair(series: str, member: str) -> str:
    """The same series as scraped from one member of an HA pair."""
    match = SERIES.match(series)
    assert match, series
    labels = match["labels"] or ""
    found = INSTANCE.search(labels)
    instance = f'instance="{found["value"] if found else "exporter"}-{member}"'
    labels = INSTANCE.sub(instance, labels) if found else ",".join(filter(None, [labels, instance]))
    return f"{match['name']}{{{labels}}}"


def test_every_case_behaves_the_same_when_scraped_from_an_ha_pair(tmp_path):
    """Each promtool case again, every input series duplicated under two instances: each
    per-validator alert is the same single alert, and no rule expression fails to evaluate
    (a many-to-many or duplicate-series match is an evaluation error)."""
    per_instance = {r["alert"] for r in rules() if r["group"] == PER_INSTANCE_GROUP}
    expressions = [r["expr"] for r in all_rules()]
    cases = []
    for case in rule_tests():
        alert_tests = [t for t in case.get("alert_rule_test", []) if t["alertname"] not in per_instance]
        eval_times = sorted({t["eval_time"] for t in case.get("alert_rule_test", [])}
                            | {t["eval_time"] for t in case.get("promql_expr_test", [])})
        cases.append({
            "interval": case.get("interval", "1m"),
            "input_series": [{"series": as_ha_pair(s["series"], member), "values": s["values"]}
                             for s in case.get("input_series", []) for member in ("a", "b")],
            "alert_rule_test": alert_tests,
            # evaluates to {} 1 whatever the rule returns, and fails the test if it errors
            "promql_expr_test": [{"expr": f"count({expr}) * 0 + 1 or vector(1)", "eval_time": at,
                                  "exp_samples": [{"labels": "{}", "value": 1}]}
                                 for at in eval_times for expr in expressions],
        })
    path = tmp_path / "ha_pair.test.yml"
    path.write_text(yaml.safe_dump({"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": cases}))
    result = run(tool("promtool"), "test", "rules", str(path))
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-8000:]


def test_alertmanager_example_is_valid(tmp_path):
    # The example reads secrets from files (webhook_url_file / url_file, Alertmanager
    # 0.26+). Debian's amtool is 0.25, which predates those settings, so validate the
    # rest of the file with the file references swapped for inline placeholders.
    config = ALERTMANAGER.read_text()
    assert "webhook_url_file:" in config and "https://" not in config.split("receivers:")[1], "no secret inline"
    legacy = config.replace("webhook_url_file: /etc/alertmanager/secrets/discord_webhook_url",
                            "webhook_url: https://discord.example/api/webhooks/0/placeholder")
    legacy = legacy.replace("url_file: /etc/alertmanager/secrets/heartbeat_url", "url: https://heartbeat.example/ping")
    # the message templates as docker-compose.yml mounts them, from the repository
    legacy = legacy.replace("/etc/alertmanager/templates/", str(REPO / "alertmanager" / "templates") + "/")
    path = tmp_path / "alertmanager.yml"
    path.write_text(legacy)
    result = run(tool("amtool"), "check-config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 templates" in result.stdout, result.stdout
    document = yaml.safe_load(config)
    routes = document["route"]["routes"]
    assert any(r["receiver"] == "heartbeat" and 'alertname = "Watchdog"' in r["matchers"] for r in routes)
    # One notification per validator and cause (tests/test_notifications.py counts them).
    assert document["route"]["group_by"] == ["alertname", "hotkey"]


def test_inhibitions_are_scoped_to_one_exporter_or_validator():
    """An inhibition without `equal` silences every target alert while any source fires: in an
    HA pair one dead exporter would silence the other's staleness alerts."""
    for rule in yaml.safe_load(ALERTMANAGER.read_text())["inhibit_rules"]:
        sources = " ".join(rule["source_matchers"])
        assert rule.get("equal"), rule
        if "BittensorExporter" in sources:
            assert {"job", "instance"} <= set(rule["equal"]), rule
        else:
            assert {"hotkey", "netuid"} <= set(rule["equal"]), rule
