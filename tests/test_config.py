"""Config validation: every problem listed at once, exit code 2, no traceback."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from exporter.cli import main
from exporter.config import ConfigError, load_config, parse_config
from tests.tricky_chain import hotkey

REPO = Path(__file__).resolve().parent.parent
GOOD_HOTKEY = hotkey(1)


def problems_of(document) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(document)
    return caught.value.problems


def test_defaults_without_a_file():
    config = load_config(None, environ={})
    assert config.chain.endpoints == ("wss://entrypoint-finney.opentensor.ai:443",)
    assert config.interval_seconds == 60
    assert config.scope.min_stake_weight == 1000
    assert config.staleness_limit_seconds == 180


def test_example_config_is_valid():
    config = load_config(str(REPO / "config.example.yaml"), environ={})
    assert config.scope.watch and config.scope.watch[0].alias


@pytest.mark.parametrize(
    "document, key",
    [
        ({"chain": {"endpoints": ["http://node:9944"]}}, "chain.endpoints[0]"),
        ({"chain": {"endpoints": ["wss://"]}}, "chain.endpoints[0]"),
        ({"chain": {"endpoints": []}}, "chain.endpoints"),
        ({"chain": {"endpoints": ["ws://node:99999"]}}, "chain.endpoints[0]"),
        ({"chain": {"timeout_seconds": "fast"}}, "chain.timeout_seconds"),
        ({"chain": {"max_in_flight": 0}}, "chain.max_in_flight"),
        ({"chain": {"max_in_flight": 2.5}}, "chain.max_in_flight"),
        ({"refresh": {"interval_seconds": 0}}, "refresh.interval_seconds"),
        ({"refresh": {"interval_seconds": True}}, "refresh.interval_seconds"),
        ({"refresh": {"every": 5}}, "refresh.every"),
        ({"scope": {"min_stake_weight": -1}}, "scope.min_stake_weight"),
        ({"scope": {"netuids": [1, "two"]}}, "scope.netuids"),
        ({"scope": {"netuids": [70000]}}, "scope.netuids"),
        ({"scope": {"watch": [{"hotkey": "5notanaddress"}]}}, "scope.watch[0].hotkey"),
        ({"scope": {"watch": [{"hotkey": GOOD_HOTKEY, "expected_take": 1.5}]}}, "scope.watch[0].expected_take"),
        ({"scope": {"watch": [{"hotkey": GOOD_HOTKEY, "alias": 7}]}}, "scope.watch[0].alias"),
        ({"scope": {"watch": [{"hotkey": GOOD_HOTKEY}, {"hotkey": GOOD_HOTKEY}]}}, "scope.watch[1].hotkey"),
        ({"scope": {"watch": {"hotkey": GOOD_HOTKEY}}}, "scope.watch"),
        ({"web": {"listen_address": "9744"}}, "web.listen_address"),
        ({"log": {"level": "loud"}}, "log.level"),
        ({"log": {"format": "xml"}}, "log.format"),
        ({"histroy": {"path": "x.db"}}, "histroy"),
        ({"chain": "wss://node"}, "chain"),
    ],
)
def test_each_bad_value_is_named(document, key):
    assert any(p.startswith(f"{key}:") for p in problems_of(document)), problems_of(document)


def test_all_problems_reported_together():
    problems = problems_of({"chain": {"endpoints": ["ftp://x"]}, "refresh": {"interval_seconds": -1}, "log": {"level": "x"}})
    assert len(problems) == 3


def test_endpoints_from_environment(tmp_path):
    config = load_config(None, environ={"BITTENSOR_EXPORTER_ENDPOINTS": "wss://a.example:443, ws://b.example:9944"})
    assert config.chain.endpoints == ("wss://a.example:443", "ws://b.example:9944")
    with pytest.raises(ConfigError):
        load_config(None, environ={"BITTENSOR_EXPORTER_ENDPOINTS": "https://a.example"})


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The real command in its own process: start-up, exit code and stderr as an operator sees them."""
    return subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True, text=True, cwd=REPO, timeout=60)


def run_main(*args: str) -> SimpleNamespace:
    """``exporter.cli.main`` in this process: the same code path without an interpreter start-up."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse exits on bad flags
            code = exit_.code
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def test_cli_bad_config_exits_2_with_one_message(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"chain": {"endpoints": ["http://x"]}, "scope": {"watch": [{"hotkey": "abc"}]}}))
    result = run_cli("check-config", "--config.file", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "chain.endpoints[0]" in result.stderr and "scope.watch[0].hotkey" in result.stderr


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--config.file", "/nonexistent/exporter.yaml"], "cannot read"),
        (["--interval", "soon"], "not a duration"),
        (["--interval", "0s"], "--interval"),
        (["--web.listen-address", "localhost"], "--web.listen-address"),
        (["--log.level", "loud"], "invalid choice"),
    ],
)
def test_cli_bad_flags_exit_2(args, needle):
    result = run_main("check-config", *args)
    assert result.returncode == 2 and needle in result.stderr and "Traceback" not in result.stderr


def test_cli_invalid_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("chain: [unclosed\n")
    result = run_main("check-config", "--config.file", str(path))
    assert result.returncode == 2 and "not valid YAML at line" in result.stderr


def test_cli_flags_override_the_file(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("refresh:\n  interval_seconds: 60\n")
    assert run_main("--config.file", str(path), "--interval", "2m", "check-config").returncode == 0
