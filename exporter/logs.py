"""Configure logging once: JSON lines off a terminal, readable console lines on one.

Formats (``log.format`` / ``--log.format``):

- ``logfmt``: one ``key=value`` line per record, as Prometheus exporters
  (go-kit) write them: ``ts``, ``level``, ``msg`` first, then the fields in
  the order they were given; a value with a space, ``=``, ``"`` or a
  control character is double-quoted with backslash escapes, so a record
  (a traceback too) is always one line. ``level`` is spelled ``warn`` for
  warnings, as go-kit spells it;
- ``json``: one JSON object per line (``timestamp``, ``level``, ``event``);
- ``console``: for people at a terminal;
- ``auto`` (the default): ``console`` on a terminal, ``json`` otherwise.

Every line the process writes to stderr goes through one handler and one
renderer, so with logfmt or JSON on, every line is one record, tracebacks
included (as an ``exception`` field):

- the exporter's own structlog loggers;
- stdlib ``logging`` (the SDK, websockets, asyncio's default reports), with
  a ``logger`` field naming where it came from;
- ``warnings.warn`` (through ``logging.captureWarnings``);
- an exception that ends the main thread or any other thread, and one Python
  can only report as "Exception ignored in ..." (``sys.excepthook``,
  ``threading.excepthook``, ``sys.unraisablehook``).

The chain session's event loop reports its own ("Task exception was never
retrieved") through its exception handler, into the same log.

``report_to`` adds one processor that sees every exporter line before it is
rendered (exceptions still attached) and leaves it as it is: exporter.sentry's,
when ``SENTRY_DSN`` is set. Without one, nothing is added.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from typing import Any, Callable, Optional

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "warning": logging.WARNING,
           "error": logging.ERROR}
RENDERED_FORMATS = ("logfmt", "json", "console")
_HANDLER_NAME = "exporter"
log = structlog.get_logger("exporter")
Processor = Callable[[Any, str, Any], Any]
_reporter: Optional[Processor] = None
_configured: Optional[tuple[str, str]] = None  # (level, rendered format) of the last configure_logging


def report_to(reporter: Optional[Processor]) -> None:
    """Pass every exporter log line, at the configured level and above, to ``reporter``
    (a structlog processor that returns the event dict unchanged); None: to nothing.

    Only the structlog pipeline is rebuilt: the handler and the hooks stay as they
    are (Sentry, set up after ``configure_logging``, wraps ``sys.excepthook``)."""
    global _reporter
    _reporter = reporter
    if _configured is not None:
        _configure_structlog(*_configured)


def configure_logging(level: str = "info", fmt: str = "auto", stream=None) -> None:
    """Route every log line of the process to ``stream`` (stderr) in one format; idempotent.

    ``level``: debug, info, warn (or warning), error. ``fmt``: auto, logfmt, json, console."""
    stream = stream or sys.stderr
    if level not in _LEVELS:
        raise ValueError(f"unknown log level {level!r} (one of {', '.join(_LEVELS)})")
    rendered = rendered_format(fmt, stream)
    _configure_structlog(level, rendered)
    timestamper = _timestamper()
    tracebacks = _tracebacks(rendered)
    handler = logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            timestamper,
            _strip_event,
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tracebacks, _renderer(rendered)],
    ))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    # The SDK logs reconnects through stdlib logging: keep its warnings, drop its chatter.
    root.setLevel(logging.WARNING)
    # The exporter's own lines are filtered by structlog already; let all of them through.
    logging.getLogger("exporter").setLevel(logging.DEBUG)
    logging.captureWarnings(True)
    sys.excepthook = _excepthook
    threading.excepthook = _thread_excepthook
    sys.unraisablehook = _unraisablehook


def rendered_format(fmt: str, stream=None) -> str:
    """What ``fmt`` renders as on ``stream``: logfmt, json or console (auto: console on a terminal)."""
    if fmt == "auto":
        return "json" if not _isatty(stream or sys.stderr) else "console"
    if fmt not in RENDERED_FORMATS:
        raise ValueError(f"unknown log format {fmt!r} (one of auto, {', '.join(RENDERED_FORMATS)})")
    return fmt


def _renderer(rendered: str) -> Any:
    if rendered == "json":
        return structlog.processors.JSONRenderer()
    if rendered == "logfmt":
        return LogfmtRenderer()
    return structlog.dev.ConsoleRenderer(colors=False)


def _configure_structlog(level: str, rendered: str) -> None:
    global _configured
    _configured = (level, rendered)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _timestamper(),
            *([_reporter] if _reporter is not None else []),  # before format_exc_info takes the exception
            *_tracebacks(rendered),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )


def _timestamper() -> Any:
    return structlog.processors.TimeStamper(fmt="iso", utc=True)


def _tracebacks(rendered: str) -> list:
    # logfmt and JSON need the traceback as a string field; the console renderer prints it itself.
    return [structlog.processors.format_exc_info] if rendered != "console" else []


# The keys go-kit's logfmt lines start with, and the event-dict keys they come from.
_LOGFMT_LEADING = (("timestamp", "ts"), ("level", "level"), ("event", "msg"))
_LOGFMT_LEVELS = {"warning": "warn"}
_LOGFMT_BAD_KEY = re.compile(r'[\x00-\x20="\x7f]')
_LOGFMT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


class LogfmtRenderer:
    """A structlog renderer: the event dict as one logfmt line (see the module docstring).

    Values: strings as they are, quoted when they hold a space, ``=``, ``"``, a
    control or other non-printable character or nothing at all (and ``"null"``,
    so it reads back as a string), with JSON's escapes (so a quoted value is a
    JSON string); None as ``null``; booleans as ``true`` and ``false``;
    anything else as ``str()`` gives it, quoted the same way. A key that is
    not a valid logfmt key has those characters replaced by ``_``; a field
    that would repeat ``ts`` or ``msg`` is written as ``_ts`` / ``_msg``.
    """

    def __call__(self, logger: Any, method_name: str, event_dict: dict) -> str:
        parts = []
        for key, name in _LOGFMT_LEADING:
            if key in event_dict:
                value = event_dict.pop(key)
                if key == "level":
                    value = _LOGFMT_LEVELS.get(value, value)
                parts.append(f"{name}={logfmt_value(value)}")
        for key, value in event_dict.items():
            name = logfmt_key(key)
            if name in ("ts", "msg"):
                name = "_" + name
            parts.append(f"{name}={logfmt_value(value)}")
        return " ".join(parts)


def logfmt_key(key: Any) -> str:
    text = _LOGFMT_BAD_KEY.sub("_", str(key))
    if not text.isprintable():
        text = "".join(c if c.isprintable() else "_" for c in text)
    return text or "_"


def logfmt_value(value: Any) -> str:
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    text = value if isinstance(value, str) else str(value)
    if text and text != "null" and text.isprintable() and not any(c in text for c in ' ="'):
        return text
    return _quote(text)


def _quote(text: str) -> str:
    if text.isprintable():
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return '"' + "".join(_escape(c) for c in text) + '"'


def _escape(char: str) -> str:
    escaped = _LOGFMT_ESCAPES.get(char)
    if escaped is not None:
        return escaped
    if char.isprintable():
        return char
    code = ord(char)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000  # as JSON writes it: a surrogate pair
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def _strip_event(logger, method_name, event_dict):
    """``warnings`` ends its message with a newline; a log line's event needs none."""
    event = event_dict.get("event")
    if isinstance(event, str):
        event_dict["event"] = event.strip()
    return event_dict


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _excepthook(exc_type, exc_value, exc_traceback) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc_value, exc_traceback)
        return
    log.critical("uncaught exception", thread=threading.current_thread().name,
                 exc_info=(exc_type, exc_value, exc_traceback))


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    log.critical("thread died of an uncaught exception", thread=args.thread.name if args.thread else None,
                 exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


def _unraisablehook(unraisable) -> None:
    exc_info = None
    if unraisable.exc_type is not None:
        exc_info = (unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback)
    log.error("exception ignored", where=unraisable.err_msg or "Exception ignored in",
              object=_safe_repr(unraisable.object), exc_info=exc_info)


def _safe_repr(value: Any, limit: int = 300) -> Any:
    if value is None:
        return None
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not lose the report
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= limit else text[:limit] + "..."
