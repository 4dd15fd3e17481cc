"""Command line: Prometheus-style flags, config loading, and wiring the exporter together."""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import re
import signal
import sys
import textwrap
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterator, Optional, Sequence


from exporter import __version__
from exporter.config import COLLECTORS, REFRESH_MODES, SCOPE_MODES, Config
from exporter.config_error import ConfigError
from exporter.config_load import ENDPOINTS_ENV, LOG_FORMATS, LOG_LEVELS, listen_address_problem, load_config
from exporter.flag_errors import Parser, unknown_flag
from exporter.history.cli import add_history_parser, run_history
from exporter.serving.routes import DEFAULT_TELEMETRY_PATH, telemetry_path_problem
from exporter.serving.status import REVISION_ENV
from exporter.serving.web_config import WebConfig, load_web_config

EXIT_CONFIG = 2
EXIT_RUNTIME = 1
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}


def parse_duration(text: str) -> float:
    """'60', '60s', '5m', '1h' or '500ms' -> seconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 60s, 5m, 1h)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


# Every environment variable the exporter (or a library on its behalf) reads, for --help.
ENVIRONMENT = (
    (ENDPOINTS_ENV, "comma-separated chain endpoint URLs, replacing chain.endpoints (keeps API keys in URLs "
                    "out of the file)"),
    ("SENTRY_DSN", "report failed refreshes and errors to Sentry (needs the sentry extra); never logged"),
    ("SENTRY_ENVIRONMENT", "the Sentry environment of those reports (read by sentry-sdk)"),
    (REVISION_ENV, "the git commit in bittensor_exporter_build_info's revision label (set when an image is "
                   "built; else read from a git checkout, else unknown)"),
    ("BITTENSOR_RUNTIME_CACHE_DIR", "where the chain SDK caches runtime metadata (default: runtime-cache beside "
                                    "history.path)"),
)


def _epilog() -> str:
    width = max(len(name) for name, _ in ENVIRONMENT)
    lines = ["environment variables:"]
    for name, meaning in ENVIRONMENT:
        text = textwrap.wrap(meaning, max(30, 78 - width - 4))
        lines.append(f"  {name:<{width}}  {text[0]}")
        lines.extend(f"  {'':<{width}}  {line}" for line in text[1:])
    return "\n".join(lines)


def _flags() -> argparse.ArgumentParser:
    """Flags accepted before or after a subcommand; SUPPRESS keeps an absent flag from
    overwriting one given in the other position."""
    flags = Parser(add_help=False, argument_default=argparse.SUPPRESS)
    flags.add_argument("--config.file", dest="config_file", metavar="PATH", help="YAML configuration file (see config.example.yaml)")
    flags.add_argument("--web.listen-address", dest="listen_address", metavar="ADDR", help="address to serve HTTP on, e.g. :9744 (overrides web.listen_address)")
    flags.add_argument("--web.telemetry-path", dest="telemetry_path", metavar="PATH",
                       help=f"path to serve metrics on (default {DEFAULT_TELEMETRY_PATH}); the landing page at / links to it")
    flags.add_argument("--web.config.file", dest="web_config_file", metavar="PATH", help="TLS and basic auth, in the Prometheus exporter-toolkit format")
    flags.add_argument("--history.path", dest="history_path", metavar="PATH",
                       help="the history database, a SQLite file (overrides history.path)")
    flags.add_argument("--interval", type=parse_duration, metavar="DURATION", help="refresh interval, e.g. 60s or 2m (overrides refresh.interval_seconds)")
    flags.add_argument("--refresh.mode", dest="refresh_mode", choices=REFRESH_MODES,
                       help="interval: every --interval; finalized: on every new finalized block, and at least every "
                            "--interval (overrides refresh.mode)")
    flags.add_argument("--scope.mode", dest="scope_mode", choices=SCOPE_MODES,
                       help="network: every validator in scope; watched: only scope.watch's hotkeys (overrides scope.mode)")
    flags.add_argument("--log.level", dest="log_level", choices=LOG_LEVELS, help="warn is warning (overrides log.level)")
    flags.add_argument("--log.format", dest="log_format", choices=LOG_FORMATS,
                       help="auto: console on a terminal, json otherwise (overrides log.format)")
    collectors = flags.add_argument_group(
        "collectors", "metric families, all on by default but activity_all and earnings_all; a flag overrides the config file's collectors: entry")
    for name, description in COLLECTORS.items():
        collectors.add_argument(f"--collector.{name}", dest=f"collector_{name}", action=argparse.BooleanOptionalAction,
                                help=description.replace("%", "%%"))
    return flags


PROG = "bittensor-validator-exporter"
DESCRIPTION = f"""\
Prometheus exporter for Bittensor validators: stake, stake weight, childkey take, validator
permit and parent/child relationships of every validator, read from one finalized block per
refresh and served at /metrics; every change is recorded in a SQLite history.

most used:
  {PROG} --config.file config.yaml             run (no file: finney, :9744)
  {PROG} check-config --config.file config.yaml
  {PROG} history --config.file config.yaml     recorded changes, newest first
From a checkout: make demo (a simulated chain, no network), make run, make history ARGS="..."."""


def build_parser() -> argparse.ArgumentParser:
    flags = _flags()
    common = {"parents": [flags], "epilog": _epilog(), "formatter_class": argparse.RawDescriptionHelpFormatter}
    parser = Parser(
        prog=PROG,
        usage="%(prog)s [COMMAND] [--config.file PATH] [flags]",
        description=DESCRIPTION,
        **common,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", prog=PROG)
    sub.add_parser("run", help="run the exporter (the default)", **common)
    sub.add_parser("check-config", help="validate the configuration and exit", **common)
    add_history_parser(sub, flags)
    return parser


def _flag(args: argparse.Namespace, name: str):
    return getattr(args, name, None)


def resolve_config(args: argparse.Namespace) -> Config:
    """The file's config with command-line overrides applied and validated."""
    config = load_config(_flag(args, "config_file"))
    problems = []
    listen, interval = _flag(args, "listen_address"), _flag(args, "interval")
    if listen is not None:
        problem = listen_address_problem(listen)
        if problem:
            problems.append(f"--web.listen-address: {problem}")
        else:
            config = replace(config, listen_address=listen)
    if interval is not None:
        if not 1 <= interval <= 86400:
            problems.append(f"--interval: must be between 1s and 24h, got {interval:g}s")
        else:
            config = replace(config, interval_seconds=interval)
    if _flag(args, "history_path"):
        config = replace(config, history=replace(config.history, path=_flag(args, "history_path")))
    if _flag(args, "refresh_mode") is not None:
        config = replace(config, refresh_mode=_flag(args, "refresh_mode"))
    mode = _flag(args, "scope_mode")
    if mode is not None:
        if mode == "watched" and not config.scope.watch:
            problems.append("--scope.mode: watched exports only the hotkeys in scope.watch, and scope.watch is empty")
        else:
            config = replace(config, scope=replace(config.scope, mode=mode))
    problem = telemetry_path_problem(telemetry_path(args))
    if problem:
        problems.append(f"--web.telemetry-path: {problem}")
    if problems:
        raise ConfigError(problems)
    enabled = set(config.collectors)
    for name in COLLECTORS:
        on = _flag(args, f"collector_{name}")
        if on is not None:
            (enabled.add if on else enabled.discard)(name)
    if enabled != set(config.collectors):
        config = replace(config, collectors=frozenset(enabled))
    for name in ("log_level", "log_format"):
        if _flag(args, name):
            config = replace(config, **{name: _flag(args, name)})
    return config


def telemetry_path(args: argparse.Namespace) -> str:
    return _flag(args, "telemetry_path") or DEFAULT_TELEMETRY_PATH


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    problem = unknown_flag(parser, argv)
    if problem:
        parser.error(problem)
    args = parser.parse_args(argv)
    if args.command not in (None, "run"):
        return _main(args, None)
    # Running: from here on SIGTERM or SIGINT asks for a clean stop (exit 0), even one
    # that arrives while the config is read or the exporter is built.
    with _stop_on_signals() as stop:
        return _main(args, stop)


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _main(args: argparse.Namespace, stop: Optional[threading.Event]) -> int:
    try:
        config = resolve_config(args)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception as error:  # noqa: BLE001 - whatever the file holds, an operator gets one line, not a traceback
        print(f"error: invalid configuration: config.file: cannot be used ({type(error).__name__}: {str(error)[:200]})",
              file=sys.stderr)
        return EXIT_CONFIG
    try:
        web = load_web_config(_flag(args, "web_config_file"))
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "history" and args.action == "backfill":
        from exporter.backfill import run_backfill_command  # reads the chain: loaded only for this command

        return run_backfill_command(config, args)
    if args.command == "history":
        return run_history(args, config.history.path)
    from exporter.history.writer import history_path_problem

    # Checked now, for a run and for check-config alike, not at every refresh: a directory, a
    # read-only place, a file that is not SQLite, one from a newer exporter or of another chain
    # would otherwise only show as failed history writes, forever.
    problem = history_path_problem(config.history.path, config.chain.genesis_hash)
    if problem:
        print(f"error: {ConfigError([f'history.path: {problem}'])}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check-config":
        print("configuration ok")
        return 0
    assert stop is not None
    return _run(config, web, stop, telemetry_path(args))


def prepare_process(config: Config) -> None:
    """Process-wide switches, flipped here at the entry point and nowhere else."""
    from exporter.logs import configure_logging
    from exporter.sentry import init_sentry

    configure_logging(config.log_level, config.log_format)
    # A refresh allocates ~10^5 short-lived, acyclic objects; with the default
    # thresholds the cyclic collector rescans everything alive several times per
    # refresh (0.1-0.2 s of CPU at mainnet scale). Collect far less often.
    gc.set_threshold(50_000, 20, 10)
    # The SDK caches runtime metadata on disk (one file per runtime version) so a
    # restart skips the download; keep it beside the history, not in a home directory.
    os.environ.setdefault("BITTENSOR_RUNTIME_CACHE_DIR", str(Path(config.history.path).resolve().parent / "runtime-cache"))
    init_sentry()


def run(config: Config, web: WebConfig = WebConfig(), telemetry_path: str = DEFAULT_TELEMETRY_PATH) -> int:
    """Start the refresh thread and the HTTP server; block until SIGINT or SIGTERM.

    A signal at any moment, start-up included, stops the exporter within
    ``SHUTDOWN_SECONDS`` with exit code 0.
    """
    with _stop_on_signals() as stop:
        return _run(config, web, stop, telemetry_path)


def _run(config: Config, web: WebConfig, stop: threading.Event, telemetry_path: str = DEFAULT_TELEMETRY_PATH) -> int:
    import structlog

    from exporter.history.writer_lock import HistoryInUse, WriterLock

    prepare_process(config)
    log = structlog.get_logger("exporter")
    lock = WriterLock(config.history.path)
    try:
        if not lock.acquire():
            log.warning("history not locked", path=lock.path,
                        hint="this file system has no flock: make sure no other exporter records into this history file")
    except HistoryInUse as error:
        log.error("history in use", path=config.history.path, holder_pid=error.holder,
                  hint="another exporter records into this history file; stop it, or give this one its own "
                       "history.path (--history.path)")
        return EXIT_RUNTIME
    except OSError as error:
        log.error("cannot lock history", path=lock.path, error=error.strerror or str(error))
        return EXIT_RUNTIME
    try:
        return _serve(config, web, stop, telemetry_path, log)
    finally:
        lock.release()


def _serve(config: Config, web: WebConfig, stop: threading.Event, telemetry_path: str, log) -> int:
    from exporter.app import build_exporter

    try:
        exporter = build_exporter(config, web, telemetry_path=telemetry_path)
    except OSError as error:
        log.error("cannot listen", address=config.listen_address, error=error.strerror or str(error))
        return EXIT_RUNTIME
    if stop.is_set():  # stopped while starting
        log.info("stopping")
        exporter.close()
        log.info("stopped", seconds=0.0)
        return 0
    exporter.start()
    log.info(
        "started",
        version=__version__,
        listen_address=config.listen_address,
        telemetry_path=telemetry_path,
        tls=web.tls is not None,
        basic_auth=bool(web.users),
        endpoints=len(config.chain.endpoints),
        interval_seconds=config.interval_seconds,
        refresh_mode=config.refresh_mode,
    )
    stop.wait()
    log.info("stopping")
    started = time.monotonic()
    exporter.close()
    log.info("stopped", seconds=round(time.monotonic() - started, 3))
    return 0
