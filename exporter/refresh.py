"""The background refresh: read the chain, build the snapshot, publish it for scrapes.

One unit of work, ``refresh_once()``; the loop only schedules it. A failed
refresh leaves the last good payload published and sets ``up`` to 0.
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Callable, Optional, Protocol

import structlog

from exporter.chain.session import ReadError
from exporter.config import Config, ScopeConfig
from exporter.history.writer import HistoryWriter
from exporter.snapshot.model import ChainRead
from exporter.serving.publication import Payload, prepare_payload
from exporter.serving.status import SelfMetrics
from exporter.snapshot.builder import build_snapshot
from exporter.chain.wire import RequestCounter

log = structlog.get_logger("exporter.refresh")

def tune_gc() -> None:
    """A refresh allocates ~10^5 short-lived, acyclic objects; with the default
    thresholds the cyclic collector rescans everything alive several times per
    refresh (0.1-0.2 s of CPU at mainnet scale). Collect far less often."""
    gc.set_threshold(50_000, 20, 10)


class ChainSource(Protocol):
    def read(self, scope: ScopeConfig, timeout: float) -> ChainRead: ...


class Refresher:
    def __init__(
        self,
        config: Config,
        source: ChainSource,
        metrics: SelfMetrics,
        counter: RequestCounter,
        *,
        history: Optional[HistoryWriter] = None,
        clock: Callable[[], float] = time.time,
    ):
        self._config = config
        self._source = source
        self._metrics = metrics
        self._counter = counter
        self._history = history
        self._clock = clock
        # Replaced whole, never mutated: HTTP threads read it without a lock.
        self.payload: Optional[Payload] = None
        self.last_success: Optional[float] = None
        self.generation = 0  # refreshes finished, good or not

    def served_payload(self) -> Optional[Payload]:
        """The payload scrapes get: the last good one, until it is too old to be trusted.

        Past ``withdraw_after_seconds`` the per-validator series are withdrawn
        (the exporter's own metrics, with up 0 and the last success time, remain)
        so dashboards show a gap instead of numbers that may be hours wrong.
        """
        if self.payload is None or self.last_success is None:
            return None
        if self._clock() - self.last_success > self._config.withdraw_after_seconds:
            return None
        return self.payload

    def is_fresh(self) -> bool:
        """Whether the last successful refresh is recent enough to trust."""
        if self.last_success is None:
            return False
        return self._clock() - self.last_success <= self._config.staleness_limit_seconds

    def refresh_once(self) -> bool:
        try:
            return self._refresh()
        finally:
            self.generation += 1

    def _refresh(self) -> bool:
        started = time.monotonic()
        requests_before = self._counter.total()
        try:
            read = self._source.read(self._config.scope, self._config.refresh_timeout_seconds)
            snapshot = build_snapshot(read, self._config.scope)
            extra = b""
            if self._history is not None:
                # Before publishing, so the change counters served match the
                # events just committed. Scrapes meanwhile serve the last payload.
                self._history.record(snapshot)
                extra = self._history.counters.render()
            payload = prepare_payload(snapshot, extra)
        except ReadError as error:
            return self._failed(error.reason, str(error), started)
        except Exception as error:  # noqa: BLE001 - a bug must not stop the exporter
            log.exception("refresh failed", reason="internal")
            return self._failed("internal", repr(error), started, logged=True)
        self.payload = payload
        self.last_success = self._clock()
        duration = time.monotonic() - started
        requests = self._counter.total() - requests_before
        m = self._metrics
        m.up.set(1)
        m.last_success.set(self.last_success)
        m.refresh_duration.observe(duration)
        m.refresh_requests.set(requests)
        m.validators.set(len(snapshot.validators))
        m.edges.set(len(snapshot.edges))
        m.snapshot_bytes.labels("identity").set(len(payload.plain))
        m.snapshot_bytes.labels("gzip").set(len(payload.gzip_head))
        log.info(
            "refresh",
            block=snapshot.chain.block,
            duration_seconds=round(duration, 3),
            validators=len(snapshot.validators),
            edges=len(snapshot.edges),
            pending_sets=len(snapshot.pending),
            requests=requests,
            spec_version=snapshot.chain.spec_version,
        )
        return True

    def _failed(self, reason: str, message: str, started: float, logged: bool = False) -> bool:
        duration = time.monotonic() - started
        self._metrics.up.set(0)
        self._metrics.errors.labels(reason).inc()
        self._metrics.refresh_duration.observe(duration)
        if not logged:
            log.warning("refresh failed", reason=reason, error=message, duration_seconds=round(duration, 3))
        return False

    def run(self, stop: threading.Event) -> None:
        """Refresh now, then every interval (measured start to start) until ``stop``."""
        while True:
            started = time.monotonic()
            self.refresh_once()
            wait = max(0.0, self._config.interval_seconds - (time.monotonic() - started))
            if stop.wait(wait):
                return
