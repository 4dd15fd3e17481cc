"""Aim crash-test kills at SQLite writes: see each write to a WAL file as it happens, and
read back, after the writer died, whether it died mid-transaction.

``FileWrites`` reports writes to one file (inotify on Linux: every ``write()``
the writer makes wakes the watcher; elsewhere, polling its size and mtime).
``wal_tail`` parses a WAL file the way SQLite's recovery does (header, salts,
cumulative checksums) and counts the frames after the last commit frame:
frames of a transaction the writer never finished.
"""

from __future__ import annotations

import ctypes
import os
import select
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

IN_MODIFY = 0x00000002
IN_CREATE = 0x00000100
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
            if libc.inotify_add_watch(fd, os.fsencode(self.path.parent), IN_MODIFY | IN_CREATE) < 0:
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


@dataclass(frozen=True)
class WalTail:
    header: bool  # a valid WAL header
    committed_frames: int  # valid frames up to and including the last commit frame
    uncommitted_frames: int  # valid frames after it: a transaction that never committed
    torn_bytes: int  # a frame (or header) cut short, or failing its checksum, at the end

    @property
    def mid_transaction(self) -> bool:
        """The writer died inside a commit. SQLite writes a WAL header only together with
        the first frame of a transaction, so a header with no frame after it counts too."""
        return self.uncommitted_frames > 0 or self.torn_bytes > 0 or (self.header and self.committed_frames == 0)


def _checksum(data: bytes, big_endian: bool, s0: int, s1: int) -> tuple[int, int]:
    words = struct.unpack((">" if big_endian else "<") + f"{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def wal_tail(path: Path) -> WalTail:
    """What SQLite's recovery will find in the WAL at ``path`` (read it before opening the database)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return WalTail(False, 0, 0, 0)
    if len(data) < 32:
        return WalTail(False, 0, 0, len(data))
    magic, _, page_size, _, salt1, salt2, c0, c1 = struct.unpack(">8I", data[:32])
    if magic not in (0x377F0682, 0x377F0683):
        return WalTail(False, 0, 0, len(data))
    big_endian = magic & 1 == 1
    s0, s1 = _checksum(data[:24], big_endian, 0, 0)
    if (s0, s1) != (c0, c1):
        return WalTail(False, 0, 0, len(data))
    frame_size = 24 + page_size
    offset, frames, last_commit, torn = 32, 0, 0, 0
    while offset < len(data):
        frame = data[offset: offset + frame_size]
        if len(frame) < frame_size:
            torn = len(frame)
            break
        _, commit_size, f_salt1, f_salt2, f0, f1 = struct.unpack(">6I", frame[:24])
        if (f_salt1, f_salt2) != (salt1, salt2):
            break  # left over from before the WAL was restarted
        s0, s1 = _checksum(frame[:8], big_endian, s0, s1)
        s0, s1 = _checksum(frame[24:], big_endian, s0, s1)
        if (s0, s1) != (f0, f1):
            torn = frame_size
            break
        frames += 1
        offset += frame_size
        if commit_size:
            last_commit = frames
    return WalTail(True, last_commit, frames - last_commit, torn)
