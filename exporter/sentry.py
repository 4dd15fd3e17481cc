"""Optional error reporting to Sentry when ``SENTRY_DSN`` is set."""

from __future__ import annotations

import os

import structlog

from exporter import __version__

log = structlog.get_logger("exporter")


def init_sentry(environ=os.environ) -> bool:
    dsn = environ.get("SENTRY_DSN", "").strip()
    if not dsn:
        return False
    try:
        import sentry_sdk
    except ImportError:
        log.warning("SENTRY_DSN is set but sentry-sdk is not installed; install the 'sentry' extra")
        return False
    from sentry_sdk.integrations.logging import ignore_logger

    # The exporter's own log lines reach stdlib logging as structlog event dicts
    # (exporter.logs); as Sentry events they would read as dict reprs, and they
    # were never sent before. Uncaught exceptions, in any thread, still are.
    for name in ("exporter", "exporter.*"):
        ignore_logger(name)
    # The DSN is a secret: it is never logged.
    sentry_sdk.init(dsn=dsn, release=f"bittensor-validator-exporter@{__version__}", send_default_pii=False)
    log.info("sentry reporting enabled")
    return True
