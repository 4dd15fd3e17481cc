"""Config validation: every problem listed at once, exit code 2, no traceback."""

from __future__ import annotations

import codecs
import contextlib
import datetime
import inspect
import io
import sqlite3
import os
import re
import subprocess
import time
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from exporter.chain import storage
from exporter.chain.wire import counting_connect_factory
from exporter.cli import main
from exporter.config_error import ConfigError
from exporter.config_load import load_config, parse_config
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


def test_the_memory_bounds_on_what_an_endpoint_sends_default_to_docs_bounds_md_and_can_be_set():
    chain = load_config(None, environ={}).chain
    assert (chain.max_scan_bytes, chain.max_response_bytes) == (256 * 2**20, 15 * 2**20)
    # the same defaults where the chain reader and the dial are built without a config
    assert storage.DEFAULT_MAX_SCAN_BYTES == chain.max_scan_bytes
    assert inspect.signature(counting_connect_factory).parameters["max_response_bytes"].default == chain.max_response_bytes
    document = {"chain": {"max_scan_bytes": 2**30, "max_response_bytes": 64 * 2**20}}
    chain = parse_config(document).chain
    assert (chain.max_scan_bytes, chain.max_response_bytes) == (2**30, 64 * 2**20)


def test_the_connections_one_client_may_hold_default_to_64_and_can_be_set():
    assert load_config(None, environ={}).max_connections_per_client == 64
    assert parse_config({"web": {"max_connections_per_client": 200}}).max_connections_per_client == 200


def test_example_config_is_valid():
    config = load_config(str(REPO / "config.example.yaml"), environ={})
    # Nothing watched until the operator adds a hotkey: a placeholder would fire
    # BittensorWatchedHotkeyNotFound on a real chain at the first `make run`.
    assert config.scope.watch == ()


def test_the_example_configs_commented_watch_entry_works_once_uncommented():
    import re

    text = (REPO / "config.example.yaml").read_text()
    block = re.search(r"^  # watch:\n((?:  #   .*\n)+)", text, re.MULTILINE)
    assert block, "the commented example of scope.watch"
    entry = "\n".join(line[len("  # "):] for line in block.group(1).splitlines())
    entry = re.sub(r"hotkey: 5F\.\.\..*", "hotkey: 5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY", entry)
    config = parse_config(yaml.safe_load(f"scope:\n  watch:\n{entry}\n"))
    (watched,) = config.scope.watch
    assert watched.alias == "my-validator" and watched.expected_take == 0.09


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
        ({"chain": {"max_scan_bytes": 1000}}, "chain.max_scan_bytes"),
        ({"chain": {"max_scan_bytes": "256MiB"}}, "chain.max_scan_bytes"),
        ({"chain": {"max_response_bytes": 2**33}}, "chain.max_response_bytes"),
        ({"chain": {"max_response_bytes": 1e7}}, "chain.max_response_bytes"),
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
        ({"web": {"max_connections_per_client": 0}}, "web.max_connections_per_client"),
        ({"log": {"level": "loud"}}, "log.level"),
        ({"log": {"format": "xml"}}, "log.format"),
        ({"histroy": {"path": "x.db"}}, "histroy"),
        ({"chain": "wss://node"}, "chain"),
        ({"scope": {"netuids": 0}}, "scope.netuids"),
        ({"scope": {"netuids": [0, 1]}}, "scope.netuids"),
        ({"scope": {"netuids": "1"}}, "scope.netuids"),
        ({"scope": {"netuids": True}}, "scope.netuids"),
        ({"scope": {"netuids": [1, None]}}, "scope.netuids"),
        ({"history": {"path": "a\0b"}}, "history.path"),
        ({"history": {"path": ["x"]}}, "history.path"),
        ({"refresh": {"interval_seconds": 10**5000}}, "refresh.interval_seconds"),
        ({"refresh": {"interval_seconds": float("nan")}}, "refresh.interval_seconds"),
        ({"refresh": {"interval_seconds": datetime.date(2024, 1, 1)}}, "refresh.interval_seconds"),
        ({"web": {"listen_address": ":" + "9" * 50}}, "web.listen_address"),
        ({"web": {"listen_address": ":\u0661\u0662"}}, "web.listen_address"),
        ({7: 1}, "7"),
        ({None: 1}, "None"),
        ({"chain": {"genesis_hash": "0x2f0555cc"}}, "chain.genesis_hash"),
        ({"chain": {"genesis_hash": "2f" * 32}}, "chain.genesis_hash"),
        ({"chain": {"genesis_hash": "0x" + "zz" * 32}}, "chain.genesis_hash"),
        ({"chain": {"genesis_hash": 12}}, "chain.genesis_hash"),
        ({"chain": {"cross_check": "yes"}}, "chain.cross_check"),
    ],
)
def test_each_bad_value_is_named(document, key):
    problems = problems_of(document)
    assert any(p.startswith(f"{key}:") for p in problems), problems
    assert all(len(p) < 400 for p in problems), "a problem names a value, bounded"


def test_root_is_never_in_scope_and_says_why():
    (problem,) = problems_of({"scope": {"netuids": 0}})
    assert "root" in problem and "never in scope" in problem
    assert parse_config({"scope": {"netuids": 5}}).scope.netuids == (5,)
    assert parse_config({"scope": {"netuids": [3, 1, 3]}}).scope.netuids == (1, 3)
    assert parse_config({"scope": {"netuids": []}}).scope.netuids == ()


def test_bad_values_are_quoted_bounded():
    (problem,) = problems_of({"scope": {"watch": [{"hotkey": "5" * 100_000}]}})
    assert len(problem) < 200 and problem.endswith("...")
    problems = problems_of({"chain": {"endpoints": [f"ftp://{'x' * 10_000}"] * 500}})
    assert len(problems) == 500 and len(str(ConfigError(problems))) < 10_000, "the message lists the first 50"
    assert "and 450 more problems" in str(ConfigError(problems))


BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
) + "scope:\n  netuids: *i\n"


@pytest.mark.parametrize("content, needle", [
    (b"chain:\n  endpoints: [\xff\xfe]\n", "is not UTF-8 text (byte 0xff at line 2)"),
    ("refresh: {interval_seconds: 30}\n".encode("utf-16"), "is UTF-16 text; save it as UTF-8"),
    ("refresh: {interval_seconds: 30}\n".encode("utf-32"), "is UTF-32 text"),
    ("refresh: {interval_seconds: 30}\n".encode("utf-16-le"), "NUL characters"),
    (BILLION_LAUGHS.encode(), "anchors and aliases"),
    (b"base: &base {interval_seconds: 5}\nrefresh:\n  <<: *base\n", "anchors and aliases"),
    (b"[" * 1000 + b"]" * 1000, "nested more than 32 levels deep"),
    (b"{a: " * 5000 + b"1" + b"}" * 5000, "nested more than 32 levels deep"),
    (b"[" + b"1," * 30_000 + b"]", "more than 20,000 values"),
    (b"x" * (2 << 20), "larger than 1024 KiB"),
    (b"chain: {}\nrefresh: {}\nchain: {}\n", "line 3, column 1: duplicate key 'chain' (first at line 1)"),
    (b"refresh:\n  interval_seconds: 5\n  interval_seconds: 6\n", "duplicate key 'interval_seconds' (first at line 2)"),
    (b"refresh: {interval_seconds: 5, interval_seconds: 6}\n", "duplicate key 'interval_seconds'"),
    (b"refresh:\n  interval_seconds: " + b"9" * 5000 + b"\n", "a value YAML cannot convert"),
    (b"refresh:\n  interval_seconds: 2024-13-45\n", "a value YAML cannot convert"),
    (b"refresh:\n  interval_seconds: 2024-01-01\n", "refresh.interval_seconds: must be a number, got date"),
    (b"refresh:\n  interval_seconds: !!binary aGVsbG8=\n", "refresh.interval_seconds: must be a number, got bytes"),
    (b"scope:\n  netuids: !!set {1, 2}\n", "scope.netuids: must be a list"),
    (b"? [a, b]\n: 1\n", "found unhashable key"),
    (b"!!python/object/apply:os.system ['echo pwned']\n", "not valid YAML at line 1"),
    (b"- chain\n- refresh\n", "must be a mapping, got list"),
    (b"just words\n", "must be a mapping, got str"),
    (b"refresh: [1, 2]\n", "refresh: must be a mapping, got list"),
    (b"chain:\n\tendpoints: []\n", "not valid YAML at line 2"),
    (b"scope:\n  netuids: 0\n", "netuid 0 is the root network"),
    (b"---\nrefresh: {}\n---\nchain: {}\n", "found another document"),
])
def test_no_config_file_gives_a_traceback(tmp_path, content, needle):
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    started = time.monotonic()
    result = run_main("check-config", "--config.file", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert needle in result.stderr, result.stderr
    assert len(result.stderr) < 2000, "one bounded message"
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("special", ["/dev/zero", "/dev/null", "/", "/proc/self/mem"])
def test_special_files(special):
    result = run_main("check-config", "--config.file", special)
    assert result.returncode in (0, 2) and "Traceback" not in result.stderr, result.stderr
    if special == "/dev/zero":
        assert "larger than 1024 KiB" in result.stderr


def test_a_utf8_byte_order_mark_and_an_empty_file_are_fine(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(codecs.BOM_UTF8 + b"refresh:\n  interval_seconds: 30\n")
    assert load_config(str(path), environ={}).interval_seconds == 30
    path.write_bytes(b"")
    assert load_config(str(path), environ={}) == load_config(None, environ={})


def config_with_history(tmp_path, history) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(f"history:\n  path: {history}\n")
    return str(path)


@pytest.mark.parametrize("make, needle", [
    (lambda d: d.mkdir() or d, "is a directory"),
    (lambda d: (d.write_text("hello, not a database\n" * 20), d)[1], "is not a SQLite database"),
    (lambda d: d.parent / "missing" / "h.db", "does not exist"),
    (lambda d: (os.mkfifo(d), d)[1], "is not a regular file"),
])
def test_an_unusable_history_path_is_a_start_up_error(tmp_path, make, needle):
    history = make(tmp_path / "h.db")
    result = run_main("--config.file", config_with_history(tmp_path, history))
    assert result.returncode == 2 and "history.path" in result.stderr and needle in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") <= 2


def test_a_read_only_history_is_a_start_up_error(tmp_path):
    from tests.test_history_store import small_filesystem

    with small_filesystem(tmp_path, "1m") as fs:
        subprocess.run(["mount", "-o", "remount,ro", str(fs)], check=True)
        try:
            result = run_main("--config.file", config_with_history(tmp_path, fs / "h.db"))
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(fs)], check=True)
    assert result.returncode == 2 and "is not writable" in result.stderr, result.stderr


def test_a_history_from_a_newer_exporter_is_a_start_up_error_and_left_untouched(tmp_path):
    path = tmp_path / "h.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 999")
    conn.close()
    before = path.read_bytes()
    result = run_main("--config.file", config_with_history(tmp_path, path))
    assert result.returncode == 2 and "upgrade the exporter" in result.stderr, result.stderr
    assert path.read_bytes() == before


def test_a_usable_history_path_passes_the_check(tmp_path):
    from exporter.history.store import HistoryStore
    from exporter.history.writer import history_path_problem

    assert history_path_problem(str(tmp_path / "new.db")) is None, "created at the first refresh"
    HistoryStore.open(str(tmp_path / "old.db")).close()
    assert history_path_problem(str(tmp_path / "old.db")) is None
    (tmp_path / "empty.db").write_bytes(b"")
    assert history_path_problem(str(tmp_path / "empty.db")) is None, "SQLite takes an empty file as a new database"


def test_all_problems_reported_together():
    problems = problems_of({"chain": {"endpoints": ["ftp://x"]}, "refresh": {"interval_seconds": -1}, "log": {"level": "x"}})
    assert len(problems) == 3


FINNEY_GENESIS = "0x2f0555cc76fc2840a25a6ea3b9637146806f1f44b090c175ffde2a7e5ab36c03"


def test_the_chain_read_is_finney_unless_genesis_hash_names_another():
    assert load_config(None, environ={}).chain.genesis_hash == FINNEY_GENESIS
    other = "0x" + "AB" * 32
    assert parse_config({"chain": {"genesis_hash": other}}).chain.genesis_hash == other.lower()
    (problem,) = problems_of({"chain": {"genesis_hash": "finney"}})
    assert problem == ("chain.genesis_hash: must be the chain's block 0 hash, 0x and 64 hex digits "
                       "(chain_getBlockHash(0)), got 'finney'")


def test_cross_check_is_off_by_default_and_needs_two_endpoints(tmp_path):
    assert load_config(None, environ={}).chain.cross_check is False
    path = tmp_path / "config.yaml"
    path.write_text("chain:\n  cross_check: true\n")
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), environ={})
    assert caught.value.problems == [
        "chain.cross_check: compares two endpoints, and chain.endpoints lists one: add another or set it false"]
    two = {"BITTENSOR_EXPORTER_ENDPOINTS": "wss://a.example:443,wss://b.example:443"}
    assert load_config(str(path), environ=two).chain.cross_check is True
    with pytest.raises(ConfigError, match="BITTENSOR_EXPORTER_ENDPOINTS lists one"):
        load_config(str(path), environ={"BITTENSOR_EXPORTER_ENDPOINTS": "wss://a.example:443"})


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


# -- exporter conventions: flags as Prometheus exporters spell them ---------------------------------

def resolved(*args: str):
    from exporter.cli import build_parser, resolve_config

    return resolve_config(build_parser().parse_args(["check-config", *args]))


def test_warn_and_logfmt_are_accepted_in_the_file_and_as_flags(tmp_path):
    path = tmp_path / "log.yaml"
    path.write_text("log:\n  level: warn\n  format: logfmt\n")
    config = load_config(str(path))
    assert (config.log_level, config.log_format) == ("warn", "logfmt")
    assert run_main("check-config", "--config.file", str(path)).returncode == 0
    config = resolved("--config.file", str(path), "--log.level", "error", "--log.format", "json")
    assert (config.log_level, config.log_format) == ("error", "json")
    for level in ("debug", "info", "warn", "warning", "error"):
        assert resolved("--log.level", level).log_level == level
    for fmt in ("auto", "logfmt", "json", "console"):
        assert resolved("--log.format", fmt).log_format == fmt
    assert "log.format: must be one of" in " ".join(problems_of({"log": {"format": "text"}}))


def test_collector_flags_override_the_files_collectors(tmp_path):
    from exporter.config import COLLECTORS, OFF_BY_DEFAULT

    DEFAULT = frozenset(COLLECTORS) - OFF_BY_DEFAULT
    path = tmp_path / "collectors.yaml"
    path.write_text("collectors:\n  subnet: false\n  chain: false\n")
    assert load_config(str(path)).collectors == DEFAULT - {"subnet", "chain"}
    config = resolved("--config.file", str(path), "--collector.subnet", "--no-collector.validator")
    assert config.collectors == DEFAULT - {"chain", "validator"}
    assert resolved("--no-collector.changes", "--collector.changes").collectors == DEFAULT, "the last wins"
    assert resolved().collectors == DEFAULT
    assert resolved("--collector.earnings_all", "--collector.activity_all").collectors == frozenset(COLLECTORS)
    path.write_text("collectors:\n  earnings_all: true\n  activity_all: true\n")
    assert load_config(str(path)).collectors == frozenset(COLLECTORS)
    everything_off = [f"--no-collector.{name}" for name in COLLECTORS]
    assert resolved(*everything_off).collectors == frozenset()
    result = run_main("check-config", "--collector.nope")
    assert result.returncode == 2 and "unknown flag --collector.nope" in result.stderr


def test_scope_mode_flag(tmp_path):
    path = tmp_path / "watched.yaml"
    path.write_text(f"scope:\n  mode: watched\n  watch:\n    - hotkey: {GOOD_HOTKEY}\n      alias: mine\n")
    assert resolved("--config.file", str(path)).scope.mode == "watched"
    assert resolved("--config.file", str(path), "--scope.mode", "network").scope.mode == "network"
    config = resolved("--config.file", str(path), "--scope.mode", "watched")
    assert config.scope.mode == "watched" and config.scope.watched_hotkeys == {GOOD_HOTKEY}
    assert resolved("--scope.mode", "network").scope.mode == "network"
    result = run_main("check-config", "--scope.mode", "watched")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 2 and "--scope.mode: watched" in result.stderr and "scope.watch is empty" in result.stderr
    assert "invalid choice" in run_main("check-config", "--scope.mode", "all").stderr


@pytest.mark.parametrize("path, needle", [
    ("metrics", "absolute URL path"),
    ("/with space", "absolute URL path"),
    ("/%zz", "absolute URL path"),
    ("//evil.example/metrics", "another host"),
    ("/a/../metrics", ". or .. segments"),
    ("/healthz", "served by the exporter already"),
    ("/api/v1/events", "served by the exporter already"),
    ("/" + "m" * 300, "at most 256"),
])
def test_a_bad_telemetry_path_exits_2(path, needle):
    result = run_main("check-config", "--web.telemetry-path", path)
    assert result.returncode == 2 and "--web.telemetry-path: " in result.stderr and needle in result.stderr
    assert "Traceback" not in result.stderr


def test_good_telemetry_paths_pass():
    for path in ("/metrics", "/", "/exporter/metrics", "/m%C3%A9trics", "/metrics/"):
        assert run_main("check-config", "--web.telemetry-path", path).returncode == 0, path


def environment_variables_read_by_the_code() -> set[str]:
    """Every NAME in os.environ.get("NAME"), environ.setdefault("NAME", ...), environ["NAME"]
    and a module constant ending in _ENV, anywhere in the exporter package."""
    names = set()
    for source in (REPO / "exporter").rglob("*.py"):
        text = source.read_text()
        names.update(re.findall(r"""environ(?:\.get|\.setdefault|\.pop)?[(\[]\s*["']([A-Z][A-Z0-9_]+)["']""", text))
        names.update(re.findall(r"""^[A-Z_]*_ENV\s*=\s*["']([A-Z][A-Z0-9_]+)["']""", text, re.MULTILINE))
    return names


def test_help_lists_every_environment_variable_the_exporter_reads():
    names = environment_variables_read_by_the_code()
    assert {"BITTENSOR_EXPORTER_ENDPOINTS", "SENTRY_DSN", "BITTENSOR_EXPORTER_REVISION",
            "BITTENSOR_RUNTIME_CACHE_DIR"} <= names
    for argv in (["--help"], ["run", "--help"], ["check-config", "--help"]):
        result = run_main(*argv)
        assert result.returncode == 0
        epilog = result.stdout.split("environment variables:", 1)[1]
        listed = set(re.findall(r"^  ([A-Z][A-Z0-9_]+)  ", epilog, re.MULTILINE))
        assert names <= listed, f"not in --help: {sorted(names - listed)}"
    help_text = run_main("--help").stdout
    for flag in ("--web.telemetry-path", "--scope.mode", "--log.format {auto,logfmt,json,console}",
                 "--collector.validator, --no-collector.validator", "--collector.changes, --no-collector.changes"):
        assert flag in help_text
