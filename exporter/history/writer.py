"""Record each refresh in the history database, on the refresh thread.

A failed write (disk full, read-only file, locked) is logged and counted, and
the recorded state does not advance, so the next refresh finds the same
changes again and retries; the exporter keeps serving throughout.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Callable, Optional

import structlog

from exporter.serving.change_counters import ChangeCounters
from exporter.snapshot.changes import HistoryState, state_of
from exporter.history.schema import SchemaTooNew
from exporter.history.store import HistoryStore, Retention
from exporter.snapshot.model import Snapshot
from exporter.serving.status import SelfMetrics

log = structlog.get_logger("exporter.history")


class HistoryWriter:
    def __init__(
        self,
        path: str,
        metrics: SelfMetrics,
        *,
        retention: Retention = Retention(),
        stake_change_ratio: float = 0.05,
        watched: frozenset[str] = frozenset(),
        clock: Callable[[], float] = time.time,
    ):
        self._path = path
        self._metrics = metrics
        self._retention = retention
        self._ratio = stake_change_ratio
        self._watched = watched
        self._clock = clock
        self._store: Optional[HistoryStore] = None
        self._state = HistoryState.empty()
        self.counters = ChangeCounters()
        self.open()

    def open(self) -> bool:
        """Open the file and load its last state; False (logged and counted) if it can't be."""
        if self._store is not None:
            return True
        try:
            store = HistoryStore.open(self._path)
            self._state = store.load_state()
        except SchemaTooNew:
            raise
        except (sqlite3.Error, OSError) as error:
            self._failed("open", error)
            return False
        self._store = store
        return True

    def record(self, snapshot: Snapshot) -> bool:
        if not self.open():
            return False
        state, events = state_of(snapshot, self._state, self._ratio)
        try:
            self._store.commit_refresh(snapshot, self._state, state, events, self._retention, self._watched)
        except (sqlite3.Error, OSError) as error:
            self._failed("write", error)
            if isinstance(error, sqlite3.DatabaseError) and not isinstance(error, sqlite3.OperationalError):
                self._reopen()
            return False
        self._state = state
        self.counters.add(events)
        self.counters.ensure(snapshot.validators)
        m = self._metrics
        m.history_writes.labels("ok").inc()
        m.history_last_success.set(self._clock())
        m.history_bytes.set(self._store.size_bytes())
        if events:
            log.info("changes recorded", block=snapshot.chain.block, events=len(events))
        return True

    def _failed(self, stage: str, error: BaseException) -> None:
        self._metrics.history_writes.labels("error").inc()
        log.error("history write failed; will retry next refresh", stage=stage, path=self._path, error=str(error))

    def _reopen(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            try:
                store.close()
            except sqlite3.Error:
                pass

    def close(self) -> None:
        self._reopen()
