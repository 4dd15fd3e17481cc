"""Turn a YAML config file (and the endpoints environment variable) into a ``Config``, checking every key.

Every problem in a config file is collected before start-up fails, so an
operator fixes them all in one pass instead of one restart per typo.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from typing import Any, Optional
from urllib.parse import urlsplit

from exporter.config import (
    COLLECTORS, OFF_BY_DEFAULT, REFRESH_MODES, SCOPE_MODES, ChainConfig, Config, HistoryConfig, ScopeConfig,
    WatchedHotkey,
)
from exporter.config_error import ConfigError, clip, kind, short
from exporter.ss58 import is_valid_ss58
from exporter.yaml_safe import parse_yaml, read_config_text

# ChildkeyTake is a u16 fraction of 65535; the chain caps it at MaxChildkeyTake.
MAX_TAKE_RATIO = 1.0
ENDPOINTS_ENV = "BITTENSOR_EXPORTER_ENDPOINTS"

# Each default is written once, on the dataclasses of ``exporter.config``; the parser below
# reads them from there (a dataclass field's default is its class attribute).
LOG_LEVELS = ("debug", "info", "warn", "warning", "error")
LOG_FORMATS = ("auto", "logfmt", "json", "console")


class _Collector:
    """Accumulates problems while walking the raw YAML document."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.problems.append(f"{key}: {message}")

    def mapping(self, raw: Any, key: str, allowed: tuple[str, ...]) -> dict:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.add(key, f"must be a mapping, got {kind(raw)}")
            return {}
        for unknown in sorted({_key_text(k) for k in raw} - set(allowed)):
            self.add(f"{key}.{unknown}" if key else unknown, f"unknown key (allowed: {', '.join(allowed)})")
        return raw

    def number(self, raw: dict, section: str, name: str, default, *, lo, hi, integer=False):
        key = f"{section}.{name}"
        if name not in raw:
            return default
        value = raw[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            integer and not isinstance(value, int)
        ):
            self.add(key, f"must be {'an integer' if integer else 'a number'}, got {kind(value)}")
            return default
        if not lo <= value <= hi:
            self.add(key, f"must be between {lo} and {hi}, got {short(value)}")
            return default
        return value

    def string(self, raw: dict, section: str, name: str, default, *, choices=None):
        key = f"{section}.{name}"
        if name not in raw:
            return default
        value = raw[name]
        if not isinstance(value, str) or not value:
            self.add(key, f"must be a non-empty string, got {kind(value)}")
            return default
        if choices and value not in choices:
            self.add(key, f"must be one of {', '.join(choices)}, got {short(value)}")
            return default
        return value


def _key_text(key: Any) -> str:
    return clip(key) if isinstance(key, str) else short(key)


def endpoint_problem(url: Any) -> Optional[str]:
    """Why ``url`` is not a usable websocket endpoint, or None."""
    if not isinstance(url, str):
        return f"must be a ws:// or wss:// URL string, got {kind(url)}"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as error:
        return f"not a valid URL ({clip(str(error))})"
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        return f"must be a ws:// or wss:// URL with a host, got {short(url)}"
    return None


def listen_address_problem(address: Any) -> Optional[str]:
    if not isinstance(address, str) or ":" not in address:
        return f"must look like 'host:port' or ':port', got {short(address)}"
    host, _, port = address.rpartition(":")
    if not (port.isascii() and port.isdigit()) or len(port) > 5 or not 0 < int(port) < 65536:
        return f"port must be 1-65535, got {short(port)}"
    return None


def genesis_hash_problem(value: Any) -> Optional[str]:
    """Why ``value`` is not a block hash as nodes write them (0x and 64 hex digits), or None."""
    if not isinstance(value, str) or not re.fullmatch(r"0x[0-9a-fA-F]{64}", value):
        return f"must be the chain's block 0 hash, 0x and 64 hex digits (chain_getBlockHash(0)), got {short(value)}"
    return None


def _parse_chain(c: _Collector, raw: Any) -> ChainConfig:
    section = c.mapping(raw, "chain", ("endpoints", "timeout_seconds", "max_in_flight", "max_scan_bytes",
                                       "max_response_bytes", "genesis_hash", "cross_check"))
    endpoints = section.get("endpoints", list(ChainConfig.endpoints))
    if isinstance(endpoints, str):
        endpoints = [endpoints]
    if not isinstance(endpoints, list) or not endpoints:
        c.add("chain.endpoints", "must be a non-empty list of ws:// or wss:// URLs")
        endpoints = list(ChainConfig.endpoints)
    for i, url in enumerate(endpoints):
        problem = endpoint_problem(url)
        if problem:
            c.add(f"chain.endpoints[{i}]", problem)
    genesis = section.get("genesis_hash", ChainConfig.genesis_hash)
    problem = genesis_hash_problem(genesis)
    if problem:
        c.add("chain.genesis_hash", problem)
        genesis = ChainConfig.genesis_hash
    cross_check = section.get("cross_check", ChainConfig.cross_check)
    if not isinstance(cross_check, bool):
        c.add("chain.cross_check", f"must be true or false, got {kind(cross_check)}")
        cross_check = ChainConfig.cross_check
    return ChainConfig(
        endpoints=tuple(u for u in endpoints if isinstance(u, str)),
        timeout_seconds=c.number(section, "chain", "timeout_seconds", ChainConfig.timeout_seconds, lo=1, hi=600),
        max_in_flight=c.number(section, "chain", "max_in_flight", ChainConfig.max_in_flight, lo=1, hi=256, integer=True),
        max_scan_bytes=c.number(section, "chain", "max_scan_bytes", ChainConfig.max_scan_bytes,
                                lo=2**20, hi=2**36, integer=True),
        max_response_bytes=c.number(section, "chain", "max_response_bytes", ChainConfig.max_response_bytes,
                                    lo=2**20, hi=2**32, integer=True),
        genesis_hash=genesis.lower(),
        cross_check=cross_check,
    )


def _parse_watch(c: _Collector, raw: Any) -> tuple[WatchedHotkey, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        c.add("scope.watch", f"must be a list of {{hotkey, alias, expected_take}}, got {kind(raw)}")
        return ()
    watched, seen = [], set()
    for i, item in enumerate(raw):
        key = f"scope.watch[{i}]"
        entry = c.mapping(item, key, ("hotkey", "alias", "expected_take"))
        if not isinstance(item, dict):
            continue
        alias = entry.get("alias", "")
        if not isinstance(alias, str):
            c.add(f"{key}.alias", f"must be a string, got {kind(alias)}")
            alias = ""
        take = c.number(entry, key, "expected_take", None, lo=0.0, hi=MAX_TAKE_RATIO)
        hotkey = entry.get("hotkey")
        if not isinstance(hotkey, str) or not _valid_ss58(hotkey):
            c.add(f"{key}.hotkey", f"must be a valid SS58 address, got {short(hotkey)}")
            continue
        if hotkey in seen:
            c.add(f"{key}.hotkey", f"{hotkey} is listed twice")
        seen.add(hotkey)
        watched.append(WatchedHotkey(hotkey=hotkey, alias=alias, expected_take=take))
    return tuple(watched)


def _valid_ss58(text: str) -> bool:
    return len(text) <= 64 and is_valid_ss58(text)  # an SS58 account id is 47-48 characters


_ROOT_NOT_IN_SCOPE = (
    "netuid 0 is the root network, which is never in scope (root stake is counted on every subnet); "
    "list subnets 1-65535, or leave netuids out for every subnet"
)


def _parse_netuids(c: _Collector, raw: Any) -> tuple[int, ...]:
    if raw is None:
        return ()
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = [raw]  # a single subnet written without brackets
    if not isinstance(raw, list):
        c.add("scope.netuids", f"must be a list of subnet ids 1-65535, got {kind(raw)}")
        return ()
    if any(n == 0 and isinstance(n, int) and not isinstance(n, bool) for n in raw):
        c.add("scope.netuids", _ROOT_NOT_IN_SCOPE)
        return ()
    bad = [n for n in raw if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 65535]
    if bad:
        c.add("scope.netuids", f"must be a list of subnet ids 1-65535, got {short(bad[0])}")
        return ()
    return tuple(sorted(set(raw)))


def _parse_scope(c: _Collector, raw: Any) -> ScopeConfig:
    section = c.mapping(raw, "scope", ("mode", "min_stake_weight", "netuids", "watch"))
    netuids = _parse_netuids(c, section.get("netuids"))
    scope = ScopeConfig(
        min_stake_weight=c.number(section, "scope", "min_stake_weight", ScopeConfig.min_stake_weight, lo=0, hi=1e12),
        netuids=netuids,
        watch=_parse_watch(c, section.get("watch")),
        mode=c.string(section, "scope", "mode", ScopeConfig.mode, choices=SCOPE_MODES),
    )
    if scope.mode == "watched" and not scope.watch:
        c.add("scope.mode", "watched exports only the hotkeys in scope.watch, and scope.watch is empty")
    return scope


def _parse_collectors(c: _Collector, raw: Any) -> frozenset:
    section = c.mapping(raw, "collectors", tuple(COLLECTORS))
    enabled = set(COLLECTORS) - OFF_BY_DEFAULT
    for name, value in section.items():
        if name not in COLLECTORS:
            continue  # reported by mapping()
        if not isinstance(value, bool):
            c.add(f"collectors.{name}", f"must be true or false, got {kind(value)}")
        elif not value:
            enabled.discard(name)
        else:
            enabled.add(name)
    return frozenset(enabled)


HISTORY_KEYS = (
    "path", "api_enabled", "stake_change_ratio", "samples_every_refresh_hours",
    "samples_scope", "samples_hourly_days", "catch_up_blocks", "archive_endpoint",
)


def _parse_history(c: _Collector, section: dict) -> HistoryConfig:
    api = section.get("api_enabled", HistoryConfig.api_enabled)
    if not isinstance(api, bool):
        c.add("history.api_enabled", f"must be true or false, got {kind(api)}")
        api = HistoryConfig.api_enabled
    path = c.string(section, "history", "path", HistoryConfig.path)
    if "\x00" in path:
        c.add("history.path", "must not contain a NUL character")
        path = HistoryConfig.path
    return HistoryConfig(
        path=path,
        api_enabled=api,
        stake_change_ratio=c.number(section, "history", "stake_change_ratio", HistoryConfig.stake_change_ratio, lo=0.0001, hi=100),
        samples_every_refresh_hours=c.number(section, "history", "samples_every_refresh_hours", HistoryConfig.samples_every_refresh_hours, lo=0, hi=24 * 365),
        samples_scope=c.string(section, "history", "samples_scope", HistoryConfig.samples_scope, choices=("watched", "all")),
        samples_hourly_days=c.number(section, "history", "samples_hourly_days", HistoryConfig.samples_hourly_days, lo=0, hi=3650),
        catch_up_blocks=c.number(section, "history", "catch_up_blocks", HistoryConfig.catch_up_blocks, lo=1, hi=7200, integer=True),
        archive_endpoint=_archive_endpoint(c, section),
    )


def _archive_endpoint(c: _Collector, section: dict) -> Optional[str]:
    value = section.get("archive_endpoint")
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith(("ws://", "wss://")):
        c.add("history.archive_endpoint", f"must be a ws:// or wss:// URL, got {short(value)}")
        return None
    return value


def parse_config(document: Any) -> Config:
    """Validate a parsed YAML document; raise ConfigError listing every problem."""
    c = _Collector()
    top = c.mapping(document, "", ("chain", "refresh", "scope", "history", "collectors", "web", "log"))
    if document is not None and not isinstance(document, dict):
        raise ConfigError(c.problems)
    chain = _parse_chain(c, top.get("chain"))
    refresh = c.mapping(
        top.get("refresh"), "refresh",
        ("interval_seconds", "timeout_seconds", "stale_after_seconds", "max_staleness_seconds", "mode", "poll_seconds"),
    )
    history = c.mapping(top.get("history"), "history", HISTORY_KEYS)
    web = c.mapping(top.get("web"), "web", ("listen_address", "max_connections_per_client"))
    log = c.mapping(top.get("log"), "log", ("level", "format"))
    listen = c.string(web, "web", "listen_address", Config.listen_address)
    problem = listen_address_problem(listen)
    if problem:
        c.add("web.listen_address", problem)
    config = Config(
        chain=chain,
        interval_seconds=c.number(refresh, "refresh", "interval_seconds", Config.interval_seconds, lo=1, hi=86400),
        refresh_timeout_seconds=c.number(refresh, "refresh", "timeout_seconds", Config.refresh_timeout_seconds, lo=1, hi=3600),
        refresh_mode=c.string(refresh, "refresh", "mode", Config.refresh_mode, choices=REFRESH_MODES),
        poll_seconds=c.number(refresh, "refresh", "poll_seconds", Config.poll_seconds, lo=0.05, hi=60),
        stale_after_seconds=c.number(refresh, "refresh", "stale_after_seconds", None, lo=1, hi=7 * 86400),
        max_staleness_seconds=c.number(refresh, "refresh", "max_staleness_seconds", None, lo=1, hi=30 * 86400),
        scope=_parse_scope(c, top.get("scope")),
        history=_parse_history(c, history),
        listen_address=listen,
        max_connections_per_client=c.number(web, "web", "max_connections_per_client", Config.max_connections_per_client,
                                            lo=1, hi=65536, integer=True),
        log_level=c.string(log, "log", "level", Config.log_level, choices=LOG_LEVELS),
        log_format=c.string(log, "log", "format", Config.log_format, choices=LOG_FORMATS),
        collectors=_parse_collectors(c, top.get("collectors")),
    )
    if c.problems:
        raise ConfigError(c.problems)
    return config


def load_config(path: Optional[str], environ: Optional[dict] = None) -> Config:
    """Read the YAML file (None: built-in defaults) and apply environment overrides."""
    document: Any = None
    if path is not None:
        document = parse_yaml(read_config_text(path), path)
    config = parse_config(document)
    environ = os.environ if environ is None else environ
    # Endpoint URLs often embed API keys, so they may come from the environment
    # instead of a committed file.
    override = environ.get(ENDPOINTS_ENV, "").strip()
    if override:
        urls = tuple(u.strip() for u in override.split(",") if u.strip())
        problems = [f"{ENDPOINTS_ENV}[{i}]: {p}" for i, u in enumerate(urls) if (p := endpoint_problem(u))]
        if problems:
            raise ConfigError(problems)
        config = replace(config, chain=replace(config.chain, endpoints=urls))
    if config.chain.cross_check and len(config.chain.endpoints) < 2:
        where = ENDPOINTS_ENV if override else "chain.endpoints"
        raise ConfigError([f"chain.cross_check: compares two endpoints, and {where} lists one: add another or set it false"])
    return config
