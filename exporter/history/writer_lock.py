"""One running exporter per history file.

Two exporters recording into one file would each diff the chain against the state the
other last wrote, and record changes no chain made (a take "changing" back and forth
between two nodes' views, a baseline from another block). That happens by accident: a
service and a `make run` in the same directory, two containers on one volume. So the
exporter holds an advisory lock on ``<history.path>.lock`` for as long as it runs, and
a second one refuses to start, naming the first.

The lock is flock(2) on a file beside the database, not on the database: SQLite takes
its own POSIX locks on the database file, and the readers (`history`, backups,
`history backfill`, `history reset`) must go on working while the exporter runs. The
kernel drops the lock when the process ends, however it ends, so a killed exporter
never leaves a stale one behind.
"""

from __future__ import annotations

import errno
import fcntl
import os
from typing import Optional


# The lock file of each role, beside the database.
_LOCK_SUFFIX = {"exporter": ".lock", "history backfill": ".backfill.lock"}


class HistoryInUse(Exception):
    """Another process holds the history file's lock of this role."""

    def __init__(self, history_path: str, role: str, holder: Optional[int]):
        self.holder = holder
        who = f"another {role} (pid {holder})" if holder else f"another {role}"
        super().__init__(f"{history_path} is being recorded into by {who}")


class WriterLock:
    """Held from ``acquire`` until ``release`` (or the process ends). ``role``: the running
    exporter (``<path>.lock``), or a ``history backfill`` (``<path>.backfill.lock``), which
    writes beside the exporter by design but must not beside a second backfill: both would
    record the same past changes."""

    def __init__(self, history_path: str, role: str = "exporter"):
        self.history_path, self.role = history_path, role
        self.path = history_path + _LOCK_SUFFIX[role]
        self._fd: Optional[int] = None

    def acquire(self) -> bool:
        """Take the lock (True), or raise ``HistoryInUse``; OSError if the file cannot be created.
        False where the file system has no flock (some network and FUSE file systems): nothing
        is held then, and the caller says so, rather than refusing to run there at all."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise HistoryInUse(self.history_path, self.role, holder) from None
        except OSError as error:
            os.close(fd)
            if error.errno in _NO_FLOCK:
                return False
            raise
        except BaseException:
            os.close(fd)
            raise
        # Our pid, for the message a second exporter prints; written only while holding the lock.
        # Only a courtesy: on a full disk the lock still holds and the exporter still runs.
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> "WriterLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


# flock(2) not supported by the file system (as opposed to held by someone: EWOULDBLOCK).
_NO_FLOCK = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL})


def _holder(fd: int) -> Optional[int]:
    """The pid the holder wrote, if it is a plausible one (the file is anyone's to scribble on)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and 0 < int(text) < 2**22 else None
