"""docker-compose.yml, prometheus.yml and Grafana provisioning: valid, and wired to each other.

No Docker daemon is needed: Debian's docker-compose (1.29) validates and
resolves the compose file, promtool checks the Prometheus config; the rest
is cross-checking names, paths and ports between the files.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest
import yaml

from exporter.config_load import load_config
from tests.external_tools import require_tool

REPO = Path(__file__).resolve().parent.parent
COMPOSE = REPO / "docker-compose.yml"
ALWAYS = {"prometheus", "grafana"}
PROFILES = {
    "live": ALWAYS | {"exporter", "alertmanager"},
    "demo": ALWAYS | {"simnode", "exporter-demo", "alertmanager-demo"},
}
# Bind-mounted files the operator creates (documented in the README), never committed.
OPERATOR_FILES = {"config.yaml", "alertmanager/discord_webhook_url", "alertmanager/heartbeat_url"}
DATA_DIR = "/var/lib/bittensor-exporter"


def compose_config(*profile_args: str) -> dict:
    """The compose file as docker-compose resolves it (paths absolute, anchors merged)."""
    result = subprocess.run(
        [require_tool("docker-compose"), "-f", str(COMPOSE), *profile_args, "config"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def compose() -> dict:
    return compose_config()


def active(compose: dict, profile: str) -> dict:
    """Services `docker compose --profile <profile> up` starts (1.29's `config` lists them all)."""
    return {name: s for name, s in compose["services"].items() if not s.get("profiles") or profile in s["profiles"]}


def answers_to(services: dict, host: str) -> list[str]:
    """Services reachable on the compose network as ``host`` (service name or network alias)."""
    return [name for name, s in services.items()
            if name == host or host in (s.get("networks") or {}).get("default", {}).get("aliases", [])]


def binds(service: dict) -> dict[str, str]:
    """container path -> host path of a service's bind mounts, as docker-compose resolved them."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("/"):
            mounts[target] = source
    return mounts


@pytest.mark.parametrize("args", [(), ("--profile", "live"), ("--profile", "demo")])
def test_compose_file_is_valid_with_each_profile(args):
    # docker-compose 1.29 accepts --profile but its `config` prints every
    # service whatever the profile; which services each profile starts is
    # checked from the profiles keys below.
    assert set(compose_config(*args)["services"]) == PROFILES["live"] | PROFILES["demo"]


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_each_profile_starts_one_exporter_alertmanager_and_prometheus(compose, profile):
    services = active(compose, profile)
    assert set(services) == PROFILES[profile]
    # prometheus.yml scrapes "exporter" and alerts "alertmanager"; Grafana reads "prometheus".
    for host in ("exporter", "alertmanager", "prometheus"):
        assert len(answers_to(services, host)) == 1, f"{profile}: {host} must name exactly one service"


def test_the_demo_reads_only_the_simulated_node(compose):
    demo = active(compose, "demo")
    config_file = binds(demo["exporter-demo"])["/etc/bittensor-exporter/config.yaml"]
    assert Path(config_file) == REPO / "docker" / "demo-config.yaml"
    endpoints = load_config(config_file, environ={}).chain.endpoints
    assert {urlsplit(url).hostname for url in endpoints} == {"simnode"}
    assert "BITTENSOR_EXPORTER_ENDPOINTS" not in (demo["exporter-demo"].get("environment") or {})
    assert demo["simnode"]["build"]["target"] == "demo"
    for name, service in demo.items():
        assert not service.get("secrets"), f"{name}: the demo posts nowhere"
        for source in binds(service).values():
            assert Path(source).relative_to(REPO).as_posix() not in OPERATOR_FILES, f"{name} needs {source}"


@pytest.mark.parametrize("name", ["exporter", "exporter-demo"])
def test_exporters_run_read_only_with_their_data_on_a_volume(compose, name):
    """The live exporter's history on a volume; the demo's in the container's memory, since
    every start of the demo chain is a new chain from block 0."""
    service = compose["services"][name]
    assert service["read_only"] is True and "/tmp" in service["tmpfs"]
    assert service["build"]["target"] == "runtime"
    volumes = [v.split(":") for v in service["volumes"]]
    on_volume = any(target == DATA_DIR and not source.startswith("/") for source, target, *_ in volumes)
    on_tmpfs = any(mount.split(":")[0] == DATA_DIR for mount in service["tmpfs"])
    assert (on_volume, on_tmpfs) == ((True, False) if name == "exporter" else (False, True))
    assert binds(service)["/etc/bittensor-exporter/config.yaml"], "config mounted"
    assert all(v.endswith(":ro") for v in service["volumes"] if v.startswith("/")), "config mounted read-only"


def test_every_service_restarts_and_publishes_on_localhost_only(compose):
    for name, service in compose["services"].items():
        assert service.get("restart") == "unless-stopped", name
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"
    named = {v.split(":")[0] for s in compose["services"].values() for v in s.get("volumes", []) if not v.startswith("/")}
    assert named <= set(compose["volumes"]), "every named volume is declared"


def test_bind_mounts_exist_or_are_the_operators_files(compose):
    for name, service in compose["services"].items():
        for source in binds(service).values():
            relative = Path(source).relative_to(REPO).as_posix()
            assert relative in OPERATOR_FILES or Path(source).exists(), f"{name} mounts missing {relative}"
    for secret in compose["secrets"].values():
        assert Path(secret["file"]).relative_to(REPO).as_posix() in OPERATOR_FILES
    ignored = (REPO / ".gitignore").read_text().split()
    assert {"alertmanager/discord_webhook_url", "alertmanager/heartbeat_url"} <= set(ignored), "secrets never committed"


def test_alertmanager_finds_its_secrets_where_its_config_reads_them(compose):
    config = yaml.safe_load((REPO / "alertmanager" / "alertmanager.yml").read_text())
    wanted = set(_values_of_keys_ending(config, "_file"))
    mounted = {s["target"] for s in compose["services"]["alertmanager"]["secrets"]}
    assert wanted and wanted == mounted
    assert binds(compose["services"]["alertmanager"])["/etc/alertmanager/alertmanager.yml"]


def _values_of_keys_ending(node, suffix: str):
    if isinstance(node, dict):
        for key, value in node.items():
            if str(key).endswith(suffix) and isinstance(value, str):
                yield value
            else:
                yield from _values_of_keys_ending(value, suffix)
    elif isinstance(node, list):
        for item in node:
            yield from _values_of_keys_ending(item, suffix)


def test_prometheus_loads_the_rules_next_to_its_config(compose):
    prometheus = compose["services"]["prometheus"]
    mounts = binds(prometheus)
    config_target = next(t for t in mounts if Path(mounts[t]) == REPO / "prometheus.yml")
    assert f"--config.file={config_target}" in prometheus["command"]
    config = yaml.safe_load((REPO / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerting/*.rules.yml"]
    rules_dir = str(PurePosixPath(config_target).parent / "alerting")
    assert Path(mounts[rules_dir]) == REPO / "alerting"
    assert list((REPO / "alerting").glob("*.rules.yml")), "the rules file exists"
    job = config["scrape_configs"][0]
    assert job["static_configs"] == [{"targets": ["exporter:9744"]}], "no target labels, the compose service"
    assert _seconds(job["scrape_timeout"]) <= _seconds(job.get("scrape_interval", config["global"]["scrape_interval"]))
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]


def test_rules_select_the_scrape_job_prometheus_yml_defines():
    """An alert on up{job="..."} for a job that does not exist would fire forever (absent())."""
    jobs = {job["job_name"] for job in yaml.safe_load((REPO / "prometheus.yml").read_text())["scrape_configs"]}
    for rules in (REPO / "alerting").glob("*.rules.yml"):
        used = set(re.findall(r'\bjob\s*=~?\s*"([^"]+)"', rules.read_text()))
        assert used <= jobs, f"{rules.name} selects jobs {used - jobs} that prometheus.yml does not scrape"


def test_prometheus_config_passes_promtool():
    result = subprocess.run([require_tool("promtool"), "check", "config", str(REPO / "prometheus.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisions_the_datasource_and_the_dashboards(compose):
    grafana = compose["services"]["grafana"]
    mounts = binds(grafana)
    assert Path(mounts["/etc/grafana/provisioning"]) == REPO / "grafana" / "provisioning"
    provider = yaml.safe_load((REPO / "grafana/provisioning/dashboards/bittensor.yml").read_text())["providers"][0]
    dashboards_dir = provider["options"]["path"]
    assert Path(mounts[dashboards_dir]) == REPO / "dashboards"
    home = PurePosixPath(grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert (REPO / "dashboards" / home.relative_to(dashboards_dir)).is_file()
    sources = yaml.safe_load((REPO / "grafana/provisioning/datasources/datasources.yml").read_text())["datasources"]
    prometheus = next(s for s in sources if s["type"] == "prometheus")
    assert urlsplit(prometheus["url"]).hostname == "prometheus"
    scrape = yaml.safe_load((REPO / "prometheus.yml").read_text())["global"]["scrape_interval"]
    assert prometheus["jsonData"]["timeInterval"] == scrape, "$__rate_interval follows the scrape interval"


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for unit in ("ms", "s", "m", "h"):
        if duration.endswith(unit):
            return float(duration[: -len(unit)]) * units[unit]
    raise ValueError(duration)
