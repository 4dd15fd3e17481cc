"""Own the history database's write connection, on the one thread that refreshes.

The connection is opened lazily by the first refresh, on the refresh thread,
and used by no other thread: SQLite connections must stay on the thread that
made them. A failed write (disk full, read-only file, locked) is logged and
reported in the refresh's outcome; the recorded state does not advance, so
the next refresh finds the same changes again and retries, and the exporter
keeps serving throughout.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import structlog

from exporter.history.schema import SchemaTooNew, check_not_newer
from exporter.history.store import HistoryStore, Retention
from exporter.snapshot.changes import ChangeEvent, HistoryState, state_of
from exporter.snapshot.model import Snapshot

log = structlog.get_logger("exporter.history")


@dataclass(frozen=True)
class Diff:
    """The changes one snapshot makes to the recorded state, not yet committed."""

    state: HistoryState
    events: tuple[ChangeEvent, ...]


@dataclass(frozen=True)
class Committed:
    """The result of one commit attempt."""

    ok: bool
    events: tuple[ChangeEvent, ...] = ()
    database_bytes: Optional[int] = None
    at: Optional[float] = None


def refuse_newer_file(path: str) -> None:
    """Raise SchemaTooNew now, at start-up, for a file from a newer exporter (read-only; nothing written)."""
    if not Path(path).is_file():
        return
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return  # not openable now: the refresh thread reports it
    try:
        check_not_newer(conn)
    except sqlite3.Error:
        pass  # not a database, or locked: the refresh thread reports it
    finally:
        conn.close()


class HistoryWriter:
    def __init__(
        self,
        path: str,
        retention: Retention,
        *,
        stake_change_ratio: float,
        watched: frozenset[str] = frozenset(),
        clock: Callable[[], float] = time.time,
    ):
        self._path = path
        self._retention = retention
        self._ratio = stake_change_ratio
        self._watched = watched
        self._clock = clock
        self._store: Optional[HistoryStore] = None
        self._owner: Optional[int] = None  # the thread that opened the connection
        self._state = HistoryState.empty()

    def _open(self) -> bool:
        """Open the file and load its last state; False (logged) if it can't be."""
        if self._store is not None:
            return True
        try:
            store = HistoryStore.open(self._path)
            self._state = store.load_state()
        except SchemaTooNew as error:
            self._failed("open", error)
            return False
        except (sqlite3.Error, OSError) as error:
            self._failed("open", error)
            return False
        self._store, self._owner = store, threading.get_ident()
        return True

    def _check_thread(self) -> None:
        if self._owner is not None and self._owner != threading.get_ident():
            raise RuntimeError("the history database is used from a thread that did not open it")

    def diff(self, snapshot: Snapshot) -> Optional[Diff]:
        """The changes ``snapshot`` makes to the recorded state; None if the file can't be opened."""
        self._check_thread()
        if not self._open():
            return None
        state, events = state_of(snapshot, self._state, self._ratio)
        return Diff(state, tuple(events))

    def commit(self, snapshot: Snapshot, diff: Diff) -> Committed:
        """Write the diff (with samples and retention) in one transaction; advance the state only on success."""
        self._check_thread()
        if self._store is None:
            return Committed(ok=False)
        try:
            self._store.commit_refresh(snapshot, self._state, diff.state, list(diff.events), self._retention, self._watched)
        except (sqlite3.Error, OSError) as error:
            self._failed("write", error)
            if isinstance(error, sqlite3.DatabaseError) and not isinstance(error, sqlite3.OperationalError):
                self.close()
            return Committed(ok=False)
        self._state = diff.state
        if diff.events:
            log.info("changes recorded", block=snapshot.chain.block, events=len(diff.events))
        return Committed(ok=True, events=diff.events, database_bytes=self._store.size_bytes(), at=self._clock())

    def record(self, snapshot: Snapshot) -> Committed:
        """``diff`` then ``commit``, for callers that don't time the stages apart."""
        diff = self.diff(snapshot)
        return Committed(ok=False) if diff is None else self.commit(snapshot, diff)

    def _failed(self, stage: str, error: BaseException) -> None:
        log.error("history write failed; will retry next refresh", stage=stage, path=self._path, error=str(error))

    def close(self) -> None:
        """Close the connection; call it on the thread that used it."""
        store, self._store = self._store, None
        self._owner = None
        if store is not None:
            try:
                store.close()
            except sqlite3.Error:
                pass
