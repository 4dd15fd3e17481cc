"""One refresh as a pipeline, run on one thread, ending in one publication.

read (chain I/O) -> snapshot (pure) -> changes (pure) -> history commit ->
render -> publish. Each stage returns what it made; the refresh folds their
outcomes into the status and swaps one immutable ``Publication`` that HTTP
threads read. A failed refresh publishes too: the last good snapshot with a
status saying why (up 0).

Nothing the chain did not say is published or recorded: the read is checked
inside the chain reader (so a bad endpoint fails over), and the snapshot is
checked (``check_snapshot``) before history or rendering sees it. Either
refusal is an ``InvalidRead``: the refresh fails with reason ``invalid`` and
one log line naming the rule.

The refresh thread is the only thread that runs the pipeline, owns the
history database's connection and the change counters, and advances the
status. Tests drive it through ``refresh_now()``, which runs a refresh on
that same thread.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Protocol

import structlog

from exporter.chain.read_failure import Attempt, ReadError
from exporter.chain.reader import EventRange
from exporter.config import Config, ScopeConfig
from exporter.history.writer import HistoryWriter
from exporter.refresh_log import ChainNotices, elapsed, log_invalid, read_failed
from exporter.serving.change_counters import ChangeCounters, render_last_changes
from exporter.serving.publication import Publication, RenderedSnapshot, first_publication, render
from exporter.serving.status import EndpointAttempt, HistoryResult, RefreshOutcome, Status, advance, render_status
from exporter.snapshot.builder import build_snapshot
from exporter.snapshot.memo import StakeMemo
from exporter.snapshot.model import ChainRead, Snapshot
from exporter.snapshot.read_rules import InvalidRead
from exporter.snapshot.snapshot_check import PassedValidators, check_snapshot

log = structlog.get_logger("exporter.refresh")
_SCHEDULED = object()  # a job the interval made, not a caller


class ChainSource(Protocol):
    def read(self, scope: ScopeConfig, timeout: float,
             events: Optional[EventRange] = None) -> tuple[ChainRead, tuple[Attempt, ...]]: ...

    def finalized_head(self, timeout: float) -> str: ...  # asked only with refresh_mode "finalized"


class RequestTotals(Protocol):
    def totals(self) -> dict[str, int]: ...


class _Stages:
    """Wall time of each stage that ran, in order."""

    def __init__(self) -> None:
        self.timings: list[tuple[str, float]] = []

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.timings.append((name, time.monotonic() - started))


class Refresher:
    def __init__(
        self,
        config: Config,
        source: ChainSource,
        requests: RequestTotals,
        endpoints: tuple[str, ...],
        *,
        history: Optional[HistoryWriter] = None,
        clock: Callable[[], float] = time.time,
    ):
        self._config = config
        self._source = source
        self._requests = requests
        self._history = history
        self._clock = clock
        self._counters = ChangeCounters(config.scope.watched_hotkeys)
        self._notices = ChainNotices()  # watched hotkeys missing and anomalies, as of the last good refresh
        # The last snapshot's stake results, reused where their inputs did not move (refresh thread only).
        self._stake_memo = StakeMemo()
        self._passed = PassedValidators()  # what the last snapshot check passed
        self._status = Status.initial(endpoints)
        # Set by stopping(): a read cut short by the stop is not logged as a failed refresh.
        self._stopping = threading.Event()
        # The last good snapshot, its time and the refresh count live only in
        # the publication; each refresh derives the next one from it.
        self._publication = first_publication(
            render_status(self._status), config.staleness_limit_seconds, config.withdraw_after_seconds
        )
        self._jobs: "queue.SimpleQueue[Optional[Future]]" = queue.SimpleQueue()
        self._thread: Optional[threading.Thread] = None

    # -- what HTTP threads read ---------------------------------------------

    def current(self) -> Publication:
        """The latest publication: one reference, replaced whole, never changed."""
        return self._publication

    # -- the pipeline (refresh thread only) -----------------------------------

    def refresh_once(self) -> Publication:
        """Run one refresh and publish its result; returns the new publication."""
        started = time.monotonic()
        requests_before = sum(self._requests.totals().values())
        stages = _Stages()
        attempts: tuple[Attempt, ...] = ()
        history: Optional[HistoryResult] = None
        error: Optional[str] = None
        snapshot: Optional[Snapshot] = None
        try:
            with stages.stage("read"):
                try:
                    read, attempts = self._source.read(self._config.scope, self._config.refresh_timeout_seconds,
                                                       self._event_range())
                except ReadError as failure:
                    attempts = failure.attempts
                    raise
            with stages.stage("snapshot"):
                snapshot = build_snapshot(read, self._config.scope, self._stake_memo)
                check_snapshot(snapshot, self._passed)
            self._notices.check_watched(snapshot)
            self._notices.log_anomalies(snapshot)
            extra = b""
            if self._history is not None:
                # Before publishing, so the change counters served match the
                # events just committed. Scrapes meanwhile serve the last publication.
                history = self._record(snapshot, stages)
                if "changes" in self._config.collectors:
                    network = self._config.scope.mode == "network"
                    extra = self._counters.render(subnets=network) + render_last_changes(self._history.last_changes)
            with stages.stage("render"):
                data = render(snapshot, extra, self._config.collectors, self._publication.data)
        except ReadError as failure:
            if self._stopping.is_set():
                error = failure.reason
                log.info("refresh interrupted: the exporter is stopping", duration_seconds=elapsed(started))
            else:
                error = read_failed(failure, attempts, started, first=self._publication.data is None)
        except InvalidRead as failure:
            error = "invalid"
            log_invalid(failure, attempts, started)
        except Exception as failure:  # noqa: BLE001 - a bug must not stop the exporter
            error = "internal"
            log.exception("refresh failed", reason=error, error=repr(failure))
        finished_at = self._clock()
        totals = self._requests.totals()
        outcome = RefreshOutcome(
            finished_at=finished_at,
            seconds=time.monotonic() - started,
            error=error,
            stages=tuple(stages.timings),
            attempts=tuple(EndpointAttempt(a.endpoint, a.reason, a.seconds) for a in attempts),
            history=history,
            requests=sum(totals.values()) - requests_before,
            request_totals=totals,
            **({} if error else _counts(data)),
        )
        if error is None:
            assert snapshot is not None
            log.info(
                "refresh",
                block=snapshot.chain.block,
                duration_seconds=round(outcome.seconds, 3),
                validators=outcome.validators,
                edges=outcome.edges,
                pending_sets=len(snapshot.pending),
                requests=outcome.requests,
                spec_version=snapshot.chain.spec_version,
                **({"dissolving": list(snapshot.dissolving)} if snapshot.dissolving else {}),
            )
        return self._publish(outcome, None if error else data)

    def _event_range(self) -> Optional[EventRange]:
        """With history: read the chain's events since the block it last recorded, to place each change."""
        if self._history is None:
            return None
        return EventRange(self._history.last_block(), self._config.history.catch_up_blocks,
                          self._history.last_block_time_ms())

    def _record(self, snapshot: Snapshot, stages: _Stages) -> HistoryResult:
        assert self._history is not None
        with stages.stage("changes"):
            diff = self._history.diff(snapshot)
        if diff is None:
            return HistoryResult(ok=False)
        with stages.stage("history"):
            committed = self._history.commit(snapshot, diff)
        if committed.ok:
            self._counters.add(committed.events)
        return HistoryResult(committed.ok, len(committed.events), committed.database_bytes, committed.at)

    def _publish(self, outcome: RefreshOutcome, data: Optional[RenderedSnapshot]) -> Publication:
        """Swap in the next publication: ``data`` from a good refresh, else the last good one kept."""
        self._status = advance(self._status, outcome)
        last = self._publication
        publication = Publication(
            generation=last.generation + 1,
            up=data is not None,
            data=data or last.data,
            status=render_status(self._status),
            status_withdrawn=render_status(self._status, withdrawn=True),
            last_success=outcome.finished_at if data is not None else last.last_success,
            stale_after_seconds=self._config.staleness_limit_seconds,
            withdraw_after_seconds=self._config.withdraw_after_seconds,
        )
        self._publication = publication  # the one atomic swap scrapes see
        return publication

    # -- the refresh thread ----------------------------------------------------

    def start(self, *, scheduled: bool = True) -> None:
        """Start the refresh thread: a refresh now and every interval (start to start) or, in
        refresh mode ``finalized``, on every new finalized block and at least every interval;
        with ``scheduled`` False, only when ``refresh_now()`` asks."""
        self._published = threading.Condition()
        self._thread = threading.Thread(target=self._run, args=(scheduled,), name="refresh", daemon=True)
        self._thread.start()

    def wait_published(self, after: int, timeout: float) -> Publication:
        """The current publication once its generation is above ``after``, or after ``timeout`` seconds."""
        if self._thread is None:
            raise RuntimeError("the refresh thread is not running")
        with self._published:
            self._published.wait_for(lambda: self._publication.generation > after, timeout)
        return self._publication

    def refresh_now(self, timeout: Optional[float] = None) -> Publication:
        """Run one refresh on the refresh thread and wait for its publication."""
        if self._thread is None:
            raise RuntimeError("the refresh thread is not running")
        job: Future = Future()
        self._jobs.put(job)
        return job.result(timeout)

    def stopping(self) -> None:
        """Say the exporter is stopping, before the read in flight is cancelled."""
        self._stopping.set()

    def stop(self, timeout: Optional[float] = None) -> None:
        """Finish the refresh in progress, close the history on its own thread, and return."""
        if self._thread is None:
            return
        self._jobs.put(None)
        self._thread.join(timeout)
        self._thread = None

    def _run(self, scheduled: bool) -> None:
        following = scheduled and self._config.refresh_mode == "finalized"
        try:
            next_at = time.monotonic()  # the next refresh due whatever the chain does
            seen: Optional[str] = None  # following: the finalized head the last refresh was for
            while True:
                wait = max(0.0, next_at - time.monotonic()) if scheduled else None
                if following and seen is not None:
                    wait = min(wait, self._config.poll_seconds)  # type: ignore[type-var]
                try:
                    job = self._jobs.get(timeout=wait)
                except queue.Empty:
                    job = _SCHEDULED
                if job is None:
                    return
                if job is _SCHEDULED:
                    if following and seen is not None and time.monotonic() < next_at:
                        head = self._finalized_head()
                        if head is None or head == seen:
                            continue  # asked again after poll_seconds: never a busy loop
                        seen = head
                    next_at = time.monotonic() + self._config.interval_seconds
                    try:
                        publication = self.refresh_once()
                        if following:
                            seen = _block_hash(publication) or seen or ""
                    except Exception:  # noqa: BLE001 - a bug in publishing must not end the thread
                        log.exception("refresh could not publish")
                else:
                    try:
                        job.set_result(self.refresh_once())
                    except BaseException as failure:  # noqa: BLE001 - handed to the waiting caller
                        job.set_exception(failure)
                with self._published:
                    self._published.notify_all()
        finally:
            if self._history is not None:
                self._history.close()

    def _finalized_head(self) -> Optional[str]:
        """The node's finalized head, or None when it cannot say (asked again after ``poll_seconds``)."""
        try:
            return self._source.finalized_head(min(self._config.chain.timeout_seconds, self._config.interval_seconds))
        except Exception as failure:  # noqa: BLE001 - a node that cannot say now may say at the next poll
            log.debug("finalized head not read", error=str(failure))
            return None


def _block_hash(publication: Publication) -> Optional[str]:
    """The block a good refresh read (the head the next new one is told from)."""
    return publication.data.snapshot.chain.block_hash if publication.up and publication.data is not None else None


def _counts(data: RenderedSnapshot) -> dict:
    return {
        "validators": len(data.snapshot.validators),
        "edges": len(data.snapshot.edges),
        "plain_bytes": len(data.plain),
        "gzip_bytes": len(data.gzip_head),
    }
