"""Own the history database's write connection, on the one thread that refreshes.

The connection is opened lazily by the first refresh, on the refresh thread,
and used by no other thread: SQLite connections must stay on the thread that
made them. A failed write (disk full, read-only file, locked, or any other
exception: history never blocks metrics) is logged and reported in the
refresh's outcome; the recorded state does not advance, so the next refresh
finds the same changes again and retries, and the exporter keeps serving
throughout.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import quote

import structlog

from exporter.history.schema import SchemaTooNew, check_not_newer
from exporter.history.reading import peek_last_block
from exporter.history.store import HistoryStore, HistoryWasReset, LastChange, Retention
from exporter.snapshot.causes import changes_since
from exporter.snapshot.changes import ChangeEvent, HistoryState
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


def another_chains_history(path: str, recorded: str, configured: str) -> str:
    return (f"{path} holds the history of another chain (genesis hash {recorded}), not of chain.genesis_hash "
            f"{configured}: give this configuration its own history.path (--history.path)")


class HistoryOfAnotherChain(Exception):
    """The file records another chain than the one configured: nothing is written into it."""


def history_path_problem(path: str, genesis_hash: Optional[str] = None) -> Optional[str]:
    """Why the history file at ``path`` can't be written, or None; nothing is created or changed.

    Checked at start-up so that a directory, a read-only file or directory, a
    file that is not SQLite or one from a newer exporter is one clear error
    then, not a failure at every refresh. A file that does not exist yet is fine if its directory is writable.
    """
    if not path:
        return "history.path is empty"
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    try:
        if target.is_dir():
            return f"{path} is a directory, not a file"
        if not parent.is_dir():
            return f"the directory {parent} does not exist"
        # SQLite writes its journal (-wal, -shm) beside the file: the directory must be writable.
        if not os.access(parent, os.W_OK | os.X_OK):
            return f"the directory {parent} is not writable"
        if not target.exists():
            return None
        if not target.is_file():
            return f"{path} is not a regular file"
        if not os.access(target, os.R_OK | os.W_OK):
            return f"{path} is not writable"
    except (OSError, ValueError) as error:  # ValueError: a NUL in the path
        return f"cannot check {path}: {getattr(error, 'strerror', None) or error}"
    try:
        conn = sqlite3.connect(f"file:{quote(str(target.resolve()))}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error as error:
        return f"cannot open {path}: {error}"
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        check_not_newer(conn)  # a file from a newer exporter is left as it is
        if genesis_hash is not None:
            recorded = _recorded_genesis(conn)
            if recorded is not None and recorded != genesis_hash.lower():
                return another_chains_history(path, recorded, genesis_hash.lower())
    except SchemaTooNew as error:
        return str(error)
    except sqlite3.DatabaseError as error:
        if "not a database" in str(error) or "malformed" in str(error):
            return f"{path} is not a SQLite database ({error})"
        return None  # locked or busy now: not a reason to refuse to start
    finally:
        conn.close()
    return None


def _recorded_genesis(conn: sqlite3.Connection) -> Optional[str]:
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'genesis_hash'").fetchone()
    except sqlite3.OperationalError:  # no meta table yet: a file no exporter has written
        return None
    return None if row is None else str(row[0]).lower()


class EventsUnavailable(Exception):
    """This refresh's read could not say what happened since the last one recorded: record nothing
    now, so the next refresh reads those blocks again."""


class HistoryWriter:
    def __init__(
        self,
        path: str,
        retention: Retention,
        *,
        stake_change_ratio: float,
        watched: frozenset[str] = frozenset(),
        clock: Callable[[], float] = time.time,
        genesis_hash: Optional[str] = None,
    ):
        """``genesis_hash``: the chain read (chain.genesis_hash). The file is bound to it at the
        first open, and a file bound to another chain is never written: its state is another
        chain's, and every difference from it would be recorded as a change."""
        self._path = path
        self._genesis = genesis_hash.lower() if genesis_hash else None
        self._retention = retention
        self._ratio = stake_change_ratio
        self._watched = watched
        self._clock = clock
        self._store: Optional[HistoryStore] = None
        self._owner: Optional[int] = None  # the thread that opened the connection
        self._state = HistoryState.empty()
        self._last_block: Optional[int] = None  # the block self._state was recorded at
        self._last_block_time_ms: Optional[int] = None  # its Timestamp.Now
        self._generation: Optional[str] = None  # the file's reset generation the state belongs to
        # (hotkey, netuid, kind) -> (block, time) of the last change, watched hotkeys only
        self._last_changes: dict[tuple[str, int, str], LastChange] = {}
        self._last_failure: Optional[tuple[str, str]] = None  # (stage, error type) last logged with a traceback

    def _open(self) -> bool:
        """Open the file and load its last state; False (logged) if it can't be."""
        if self._store is not None:
            return True
        try:
            store = HistoryStore.open(self._path)
        except Exception as error:  # noqa: BLE001 - SchemaTooNew, sqlite3.Error, OSError, or a bug
            self._failed("open", error)
            return False
        try:
            self._load(store, store.ensure_generation())
        except Exception as error:  # noqa: BLE001 - history never blocks metrics
            self._failed("open", error)
            _close_quietly(store)
            return False
        self._store, self._owner = store, threading.get_ident()
        self._last_failure = None
        return True

    def _load(self, store: HistoryStore, generation: Optional[str]) -> None:
        """The recorded state and last changes as the file holds them at ``generation``."""
        if self._genesis is not None:
            recorded = store.claim_chain(self._genesis)
            if recorded != self._genesis:
                raise HistoryOfAnotherChain(another_chains_history(self._path, recorded, self._genesis))
        state = store.load_state()
        last_changes = store.last_changes(self._watched)
        last_block = store.last_block() if not state.is_empty else None
        self._state, self._generation, self._last_changes = state, generation, last_changes
        self._last_block = last_block
        self._last_block_time_ms = store.last_block_time_ms() if last_block is not None else None

    def _follow_reset(self, store: HistoryStore) -> bool:
        """Reload if the file was wiped since it was loaded; True if it was."""
        generation = store.generation()
        if generation == self._generation and generation is not None:
            return False
        log.warning("history was reset; recording a new baseline, no events for it", path=self._path)
        self._load(store, store.ensure_generation())
        return True

    @property
    def last_changes(self) -> dict[tuple[str, int, str], LastChange]:
        """(hotkey, netuid, kind) -> (block, time, cause, recorded) of the last recorded change, for watched hotkeys."""
        return dict(self._last_changes)

    def _check_thread(self) -> None:
        if self._owner is not None and self._owner != threading.get_ident():
            raise RuntimeError("the history database is used from a thread that did not open it")

    def diff(self, snapshot: Snapshot) -> Optional[Diff]:
        """The changes ``snapshot`` makes to the recorded state; None if the file can't be opened."""
        self._check_thread()
        if not self._open():
            return None
        assert self._store is not None
        try:
            self._follow_reset(self._store)
            state, events = self._changes(snapshot)
        except Exception as error:  # noqa: BLE001 - history never blocks metrics
            self._failed("changes", error)
            return None
        return Diff(state, tuple(events))

    def _changes(self, snapshot: Snapshot) -> tuple[HistoryState, list[ChangeEvent]]:
        """The new state and its changes, each at its block with its cause when the snapshot carries
        the chain's events since the block this state was recorded at."""
        if self._last_block is not None and snapshot.chain.block < self._last_block:
            # The read gate refuses such a head; this keeps the file right whoever calls.
            raise EventsUnavailable(f"block {snapshot.chain.block} is behind block {self._last_block}, which "
                                    "history already recorded; recording resumes once the chain is past it")
        window = snapshot.events
        if window is not None and window.failed is not None:
            raise EventsUnavailable(f"the chain's events since block {window.first - 1} could not be read "
                                    f"({window.failed}); changes are placed by a later refresh")
        if window is not None and window.first != (self._last_block or 0) + 1:
            window = None  # events of other blocks than those since this state (a reset, a failed write)
        return changes_since(self._state, snapshot, self._ratio, window)

    def last_block(self) -> Optional[int]:
        """The block of the last refresh recorded, to read the chain's events since (None: none).

        Before the first refresh has opened the file, it is peeked at read-only: the read
        comes first, and nothing is written until a refresh has something to commit."""
        self._check_thread()
        if self._store is not None:
            return self._last_block
        return peek_last_block(self._path)

    def last_block_time_ms(self) -> Optional[int]:
        """The Timestamp.Now of ``last_block()`` (None: not known), peeked at like it."""
        self._check_thread()
        if self._store is not None:
            return self._last_block_time_ms
        return peek_last_block(self._path, "last_block_time_ms")

    def commit(self, snapshot: Snapshot, diff: Diff) -> Committed:
        """Write the diff (with samples and retention) in one transaction; advance the state only on success."""
        self._check_thread()
        if self._store is None:
            return Committed(ok=False)
        store = self._store
        try:
            try:
                store.commit_refresh(snapshot, self._state, diff.state, list(diff.events), self._retention,
                                     self._watched, self._generation)
            except HistoryWasReset:
                # Wiped between diff and commit: the events were against state the file no longer holds.
                self._follow_reset(store)
                state, events = self._changes(snapshot)
                diff = Diff(state, tuple(events))
                store.commit_refresh(snapshot, self._state, diff.state, list(diff.events), self._retention,
                                     self._watched, self._generation)
        except Exception as error:  # noqa: BLE001 - any failure, SQLite's or not, leaves the state where it was
            self._failed("write", error)
            if isinstance(error, sqlite3.DatabaseError) and not isinstance(error, sqlite3.OperationalError):
                self.close()  # a corrupt file or a broken connection: reopen next refresh
            return Committed(ok=False)
        self._state = diff.state
        self._last_block = snapshot.chain.block
        self._last_block_time_ms = round(snapshot.chain.timestamp_seconds * 1000)
        self._last_failure = None
        for e in diff.events:
            if e.hotkey in self._watched:
                key = (e.hotkey, e.netuid, e.kind)
                if key not in self._last_changes or self._last_changes[key][0] <= e.block:
                    self._last_changes[key] = (e.block, e.time, e.cause, float(snapshot.chain.timestamp_seconds))
        if diff.events:
            log.info("changes recorded", block=snapshot.chain.block, events=len(diff.events))
        try:
            size: Optional[int] = store.size_bytes()
        except OSError:
            size = None
        return Committed(ok=True, events=diff.events, database_bytes=size, at=self._clock())

    def record(self, snapshot: Snapshot) -> Committed:
        """``diff`` then ``commit``, for callers that don't time the stages apart."""
        diff = self.diff(snapshot)
        return Committed(ok=False) if diff is None else self.commit(snapshot, diff)

    def _failed(self, stage: str, error: BaseException) -> None:
        """One log line per failure. An unexpected exception (not SQLite's or the
        file system's) carries its traceback, once until history works again."""
        expected = isinstance(error, (sqlite3.Error, OSError, SchemaTooNew, EventsUnavailable, HistoryOfAnotherChain))
        kind = (stage, type(error).__name__)
        traceback = not expected and kind != self._last_failure
        if not expected:
            self._last_failure = kind
        log.error(
            "history write failed; will retry next refresh",
            stage=stage,
            path=self._path,
            error=_bounded(str(error) or type(error).__name__),
            error_type=type(error).__name__,
            exc_info=error if traceback else None,
        )

    def close(self) -> None:
        """Close the connection; call it on the thread that used it."""
        store, self._store = self._store, None
        self._owner = None
        if store is not None:
            _close_quietly(store)


def _close_quietly(store: HistoryStore) -> None:
    try:
        store.close()
    except Exception:  # noqa: BLE001 - closing is the last thing done with it
        pass


def _bounded(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
