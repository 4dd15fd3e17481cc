"""Aim crash-test kills at SQLite writes: see each write to a WAL file as it happens, and
read back, after the writer died, whether it died mid-transaction.

``FileWrites`` reports writes to one file (inotify on Linux: every ``write()``
the writer makes wakes the watcher; elsewhere, polling its size and mtime).
``died_in_a_commit`` compares what a killed writer wrote to its WAL with what
SQLite's recovery keeps of it: bytes beyond that are a commit it never finished.
"""

from __future__ import annotations

import ctypes
import os
import select
import shutil
import sqlite3
import struct
import time
from pathlib import Path
from typing import Optional

IN_MODIFY = 0x00000002
_EVENT = struct.Struct("iIII")


class FileWrites:
    """Writes to ``path`` (which may not exist yet), one ``wait()`` per observed change."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd: Optional[int] = None
        self._pending = 0
        self._last: Optional[tuple[int, int]] = None
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
            if fd < 0:
                raise OSError(ctypes.get_errno(), "inotify_init1")
            if libc.inotify_add_watch(fd, os.fsencode(self.path.parent), IN_MODIFY) < 0:
                os.close(fd)
                raise OSError(ctypes.get_errno(), "inotify_add_watch")
            self._fd = fd
        except (OSError, AttributeError):
            self._fd = None  # no inotify: poll
        self.uses_inotify = self._fd is not None

    def _stat(self) -> Optional[tuple[int, int]]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_size, st.st_mtime_ns

    def _read_events(self) -> None:
        name = os.fsencode(self.path.name)
        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                return
            offset = 0
            while offset < len(data):
                _, mask, _, length = _EVENT.unpack_from(data, offset)
                event_name = data[offset + _EVENT.size: offset + _EVENT.size + length].rstrip(b"\0")
                offset += _EVENT.size + length
                if event_name == name and mask & IN_MODIFY:
                    self._pending += 1

    def drain(self) -> None:
        """Forget changes seen so far (e.g. the test's own checkpoint of the file)."""
        if self._fd is not None:
            self._read_events()
        self._pending = 0
        self._last = self._stat()

    def wait(self, timeout: float) -> bool:
        """True as soon as the file has been written to since the last call (or ``drain``);
        False after ``timeout`` seconds without a write."""
        deadline = time.monotonic() + timeout
        while True:
            if self._fd is not None:
                self._read_events()
            else:
                now = self._stat()
                if now is not None and now != self._last:
                    self._pending += 1
                self._last = now
            if self._pending:
                self._pending -= 1
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._fd is not None:
                select.select([self._fd], [], [], remaining)
            else:
                time.sleep(min(remaining, 0.0005))  # polling fallback only

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "FileWrites":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def recovered_log_end(db: Path, scratch: Path) -> int:
    """How many bytes of ``db``'s WAL SQLite's recovery keeps: its header and every frame up
    to the last commit (0 when it keeps no frame). Asks SQLite itself, on a copy of the
    database and its WAL (without the shared-memory index, so recovery reads the WAL)."""
    wal = Path(f"{db}-wal")
    if not wal.exists() or wal.stat().st_size == 0:
        return 0
    scratch.mkdir(exist_ok=True)
    copy = scratch / "recover.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{copy}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(db, copy)
    shutil.copyfile(wal, f"{copy}-wal")
    conn = sqlite3.connect(copy)
    try:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        conn.close()
    return 32 + frames * (24 + page_size) if frames > 0 else 0


def written_end(before: bytes, after: bytes, chunk: int = 4096) -> int:
    """One past the last byte that differs between two versions of a file (0: identical)."""
    if len(after) > len(before):
        return len(after)
    for start in range((len(after) - 1) // chunk * chunk, -1, -chunk):
        a, b = after[start:start + chunk], before[start:start + chunk]
        if a != b:
            return start + next(i for i in range(len(a), 0, -1) if a[i - 1] != b[i - 1])
    return 0


def died_in_a_commit(wal_before: bytes, db: Path, scratch: Path) -> bool:
    """Whether the writer of ``db``, now dead, wrote WAL bytes that recovery discards: frames of
    a transaction whose commit frame it never wrote (or a new WAL header, which SQLite writes
    only together with a transaction's first frame). ``wal_before``: the WAL before it ran.
    Call it before anything opens the database."""
    wal = Path(f"{db}-wal")
    after = wal.read_bytes() if wal.exists() else b""
    return written_end(wal_before, after) > recovered_log_end(db, scratch)
