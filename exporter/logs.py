"""Configure logging once: JSON lines off a terminal, readable console lines on one.

Every line the process writes to stderr goes through one handler and one
renderer, so with JSON on, every line is one JSON object, tracebacks included
(as an ``exception`` field):

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
import sys
import threading
from typing import Any, Callable, Optional

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_HANDLER_NAME = "exporter"
log = structlog.get_logger("exporter")
Processor = Callable[[Any, str, Any], Any]
_reporter: Optional[Processor] = None
_configured: Optional[tuple[str, bool]] = None  # (level, use_json) of the last configure_logging


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
    """Route every log line of the process to ``stream`` (stderr) in one format; idempotent."""
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not _isatty(stream))
    _configure_structlog(level, use_json)
    timestamper = _timestamper()
    tracebacks = _tracebacks(use_json)
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    handler = logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            timestamper,
            _strip_event,
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tracebacks, renderer],
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


def _configure_structlog(level: str, use_json: bool) -> None:
    global _configured
    _configured = (level, use_json)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _timestamper(),
            *([_reporter] if _reporter is not None else []),  # before format_exc_info takes the exception
            *_tracebacks(use_json),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )


def _timestamper() -> Any:
    return structlog.processors.TimeStamper(fmt="iso", utc=True)


def _tracebacks(use_json: bool) -> list:
    # JSON needs the traceback as a string field; the console renderer prints it itself.
    return [structlog.processors.format_exc_info] if use_json else []


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
