"""Optional error reporting to Sentry when ``SENTRY_DSN`` is set.

What is sent (nothing at all without ``SENTRY_DSN``: ``sentry_sdk`` is not even
imported):

- every exporter log line at level error or critical, and every one carrying
  an exception, e.g. ``refresh failed`` with ``reason=internal`` (a bug), a
  failed history write, an exception a thread died of (with its traceback);
- the warning ``refresh failed`` (the chain could not be read, or what it
  said was refused): an event of level warning, tagged with its ``reason`` and
  grouped by (event, reason), not one issue per error text;
- stdlib ``logging`` errors of other libraries, uncaught exceptions in the main
  thread and in any other thread (Sentry's logging, excepthook and threading
  integrations).

Log lines below that become breadcrumbs of the next event. An event carries
the log line's fields as ``extra`` (low-cardinality ones, e.g. ``reason``, as
tags); those fields are what the exporter logs, so endpoints appear as scheme,
host and port only, and the DSN never. Frame local variables are not sent (a
frame may hold the configuration, endpoint credentials included).

Volume is bounded: of the events with the same key (log event, reason,
exception type) the first is sent, then at most one per
``REPORT_INTERVAL_SECONDS``, which says how many were held back since. A node
down for a day sends one event per ``REPORT_INTERVAL_SECONDS``, not one per
refresh.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, Callable, Hashable, Mapping, MutableMapping, Optional

import structlog

from exporter import __version__

log = structlog.get_logger("exporter")

REPORT_INTERVAL_SECONDS = 600.0
# Warnings worth an event; every other warning is a breadcrumb.
REPORTED_WARNINGS = frozenset({"refresh failed"})
# Fields that become tags (searchable, few values); every field is in ``extra``.
TAG_FIELDS = ("reason", "rule", "stage", "error_type", "endpoint", "thread")
# Sentry's levels for structlog's.
_LEVELS = {"debug": "debug", "info": "info", "warning": "warning", "error": "error", "critical": "fatal"}
# Keys of a structlog event dict that are not the line's fields.
_NOT_FIELDS = frozenset({"event", "level", "timestamp", "exc_info", "stack_info", "logger"})
_HINT_KEY = "exporter_report_key"
_MAX_KEYS = 1024
_MAX_VALUE = 1000


def init_sentry(
    environ: Mapping[str, str] = os.environ,
    *,
    interval_seconds: float = REPORT_INTERVAL_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """Start reporting to Sentry if ``SENTRY_DSN`` is set; call after ``configure_logging``.

    Returns whether reporting is on. ``interval_seconds`` and ``clock``: the rate
    limit (see the module docstring).
    """
    from exporter.logs import report_to

    dsn = environ.get("SENTRY_DSN", "").strip()
    if not dsn:
        return False
    try:
        import sentry_sdk
    except ImportError:
        log.warning("SENTRY_DSN is set but sentry-sdk is not installed; install the 'sentry' extra")
        return False
    from sentry_sdk.integrations.atexit import AtexitIntegration
    from sentry_sdk.integrations.logging import ignore_logger

    # The exporter's own lines reach stdlib logging as structlog event dicts
    # (exporter.logs); Sentry's logging integration would send them as dict
    # reprs. SentryReporter sends them instead, with their fields.
    for name in ("exporter", "exporter.*"):
        ignore_logger(name)
    # The DSN is a secret: it is never logged.
    sentry_sdk.init(
        dsn=dsn,
        release=f"bittensor-validator-exporter@{__version__}",
        send_default_pii=False,
        # A frame's locals may hold the configuration, endpoint credentials included.
        include_local_variables=False,
        # Only the integrations this process needs (logging, threading, excepthook,
        # dedupe, atexit, ...), none patched into whatever else happens to be installed.
        auto_enabling_integrations=False,
        # At exit Sentry's default prints three plain lines to stderr; log one instead.
        integrations=[AtexitIntegration(callback=_flushing_at_exit)],
        before_send=RateLimit(interval_seconds, clock),
    )
    report_to(SentryReporter(sentry_sdk))
    log.info("sentry reporting enabled", interval_seconds=interval_seconds)
    return True


class SentryReporter:
    """A structlog processor: sends log lines to Sentry (see the module docstring), changes none."""

    def __init__(self, sdk: Any) -> None:
        self._sdk = sdk
        from sentry_sdk.utils import event_from_exception

        self._event_from_exception = event_from_exception

    def __call__(self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        try:
            self._report(logger, method_name, event_dict)
        except Exception:  # noqa: BLE001 - reporting must never cost a log line
            pass
        return event_dict

    def _report(self, logger: Any, method_name: str, event_dict: Mapping[str, Any]) -> None:
        level = _LEVELS.get(str(event_dict.get("level", method_name)), "error")
        name = str(event_dict.get("event", ""))
        logger_name = getattr(logger, "name", None) or "exporter"
        exc_info = _exc_info(event_dict.get("exc_info"))
        fields = {k: _bounded(v) for k, v in event_dict.items() if k not in _NOT_FIELDS}
        if exc_info is None and level not in ("error", "fatal") and not (level == "warning" and name in REPORTED_WARNINGS):
            self._sdk.add_breadcrumb(category=logger_name, message=name, level=level, data=fields)
            return
        reason = fields.get("reason")
        hint: dict[str, Any] = {}
        event: dict[str, Any] = {}
        if exc_info is not None:
            client = self._sdk.get_client()
            event, hint = self._event_from_exception(
                exc_info, client_options=client.options, mechanism={"type": "logging", "handled": True})
        else:
            event["fingerprint"] = [logger_name, name] + ([str(reason)] if reason is not None else [])
        hint[_HINT_KEY] = (logger_name, name, reason, exc_info[0].__name__ if exc_info else None)
        title = f"{name}: {reason}" if reason is not None else name
        event.update(
            level=level,
            logger=logger_name,
            logentry={"message": title, "formatted": title, "params": []},
            tags={k: str(fields[k]) for k in TAG_FIELDS if fields.get(k) is not None},
            extra=fields,
        )
        self._sdk.capture_event(event, hint=hint)


class RateLimit:
    """Sentry's ``before_send``: of the events with one key, the first, then one per ``interval_seconds``."""

    def __init__(self, interval_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[Hashable, tuple[float, int]] = {}  # key -> (last sent at, held back since)

    def __call__(self, event: MutableMapping[str, Any], hint: Optional[Mapping[str, Any]]) -> Optional[MutableMapping[str, Any]]:
        key = (hint or {}).get(_HINT_KEY) or _event_key(event)
        with self._lock:
            now = self._clock()
            last = self._keys.get(key)
            if last is not None and now - last[0] < self._interval:
                self._keys[key] = (last[0], last[1] + 1)
                return None
            if last is None and len(self._keys) >= _MAX_KEYS:
                self._forget(now)
            self._keys[key] = (now, 0)
        if last is not None and last[1]:
            event.setdefault("extra", {})["held_back_since_last_report"] = last[1]
        return event

    def _forget(self, now: float) -> None:
        self._keys = {k: v for k, v in self._keys.items() if now - v[0] < self._interval}
        if len(self._keys) >= _MAX_KEYS:
            self._keys.clear()


def _event_key(event: Mapping[str, Any]) -> Hashable:
    """The key of an event not from SentryReporter (another library's log record, an uncaught exception)."""
    values = (event.get("exception") or {}).get("values") or []
    what = values[-1].get("type") if values else (event.get("logentry") or {}).get("message") or event.get("message")
    return (event.get("logger"), str(what)[:200], (event.get("tags") or {}).get("reason"))


def _exc_info(value: Any) -> Optional[tuple]:
    if isinstance(value, BaseException):
        return (type(value), value, value.__traceback__)
    if isinstance(value, tuple) and len(value) == 3 and value[0] is not None:
        return value
    if value is True:
        info = sys.exc_info()
        return info if info[0] is not None else None
    return None


def _bounded(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if not isinstance(value, str):
        try:
            value = repr(value)
        except Exception:  # noqa: BLE001 - a broken __repr__ must not lose the report
            value = f"<{type(value).__name__} object>"
    return value if len(value) <= _MAX_VALUE else value[:_MAX_VALUE] + "..."


def _flushing_at_exit(pending: int, timeout: float) -> None:
    log.info("sending pending sentry events", pending=pending, timeout_seconds=timeout)
