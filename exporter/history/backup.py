"""Copy the live history database to a backup file, consistently, while the exporter writes it.

SQLite's online backup API copies the file page by page. Every step runs inside one
read transaction held on the source for the whole copy: in WAL mode that pins one
snapshot (the last commit before the copy began) and never blocks the exporter's
writer, which goes on committing to the write-ahead log meanwhile. Without that
transaction each step would take a fresh snapshot, and every commit between two
steps would restart the copy from page 1 (under a writer that commits every second,
a large file might never finish).

The copy goes to a hidden temporary file beside the destination, is checked
(``PRAGMA integrity_check``, the schema version, the events readable) and synced,
and only then renamed over the destination: PATH is either the previous file or a
complete, checked copy, never half of one.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from urllib.parse import quote

from exporter.history.schema import SCHEMA_VERSION

# Pages copied per step (4 KiB pages: 1 MiB). The steps hold no lock the writer waits
# for; stepping keeps each call into SQLite short, so Ctrl-C or SIGTERM stops a copy
# of a large file promptly (the temporary file is then removed).
STEP_PAGES = 256
# Only used if a step finds the source busy (the WAL being recovered after a crash);
# a step that copied pages goes straight on to the next.
BUSY_SLEEP_SECONDS = 0.01


class BackupError(Exception):
    """A backup that could not be made, as one line for the operator; nothing was written at PATH."""


@dataclass(frozen=True)
class Backup:
    path: str
    size_bytes: int
    events: int
    newest_block: Optional[int]
    schema_version: int

    def summary(self) -> str:
        newest = "no events yet" if self.newest_block is None else f"newest event at block {self.newest_block}"
        return f"backup written: {self.path} ({_size_text(self.size_bytes)}, {self.events} events, {newest})"


def backup_database(
    source: str,
    destination: str,
    *,
    force: bool = False,
    now: Optional[float] = None,
    step_pages: int = STEP_PAGES,
) -> Backup:
    """Write a checked copy of the history database ``source`` to ``destination``.

    ``destination`` may be a directory: the copy is then named after the source and
    the time (``history-20260102T031500Z.db``). An existing file is replaced only with
    ``force``. Raises ``BackupError`` with the reason; nothing is left behind then.
    """
    _check_source_exists(source)
    target = backup_target(source, destination, now=time.time() if now is None else now)
    _check_target(source, target, force)
    conn = _open_source(source)
    try:
        version = _begin_snapshot(conn, source)
        temporary = _temporary_beside(target)
        try:
            _copy(conn, temporary, step_pages)
            conn.execute("COMMIT")  # the snapshot is no longer needed: let the writer checkpoint
            conn.close()
            result = _verify(temporary, version, target)
            _sync(temporary)
            if not force and target.exists():  # appeared while copying
                raise BackupError(f"{target} appeared while the backup was written: pass --force to replace it")
            os.replace(temporary, target)
        except BaseException:
            _remove_quietly(temporary)
            raise
    except OSError as error:
        raise BackupError(_os_problem(error, target.parent)) from None
    except sqlite3.Error as error:
        raise BackupError(f"backup failed: {error}") from None
    finally:
        conn.close()
    _sync_directory(target.parent)
    return Backup(str(target), target.stat().st_size, *result)


def backup_target(source: str, destination: str, *, now: float) -> Path:
    """The file ``destination`` names: itself, or a timestamped file in it if it is a directory."""
    path = Path(destination)
    if path.is_dir() or destination.endswith(("/", os.sep)):
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        live = Path(source)
        return path / f"{live.stem}-{stamp}{live.suffix or '.db'}"
    return path


def _check_source_exists(source: str) -> None:
    path = Path(source)
    if not path.exists():
        raise BackupError(f"no history database at {source} (the exporter creates it on its first refresh)")
    if not path.is_file():
        raise BackupError(f"{source} is not a regular file")


def _check_target(source: str, target: Path, force: bool) -> None:
    live = os.path.realpath(source)
    # The live file, its journal files, or another name (hard link) of the live file:
    # renaming the copy over any of them would destroy what is being copied.
    if os.path.realpath(target) in {live, f"{live}-wal", f"{live}-shm", f"{live}-journal"} or (
        target.exists() and os.path.samefile(target, source)
    ):
        raise BackupError(f"{target} is the live history database (or its journal): choose another backup path")
    directory = target.parent
    if not directory.exists():
        raise BackupError(f"cannot write the backup: the directory {directory} does not exist")
    if not directory.is_dir():
        raise BackupError(f"cannot write the backup: {directory} is not a directory")
    if target.is_dir():
        raise BackupError(f"{target} is a directory")  # a directory named like the timestamped file
    if target.exists() or target.is_symlink():
        if not target.is_file():
            raise BackupError(f"{target} exists and is not a regular file")
        if not force:
            raise BackupError(f"{target} exists: pass --force to replace it")


def _open_source(source: str) -> sqlite3.Connection:
    # mode=rw, never created; query_only: this connection writes nothing. Not mode=ro: when
    # the exporter is stopped, a read-only connection would leave -wal and -shm files
    # behind, owned by whoever ran the backup (root, from a crontab), that the exporter
    # then could not write. A read-write one removes them as it closes.
    uri = f"file:{quote(os.path.abspath(source))}?mode=rw"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=5, isolation_level=None)
        conn.execute("PRAGMA query_only = 1")
    except sqlite3.Error as error:
        raise BackupError(f"cannot open {source}: {error}") from None
    return conn


def _begin_snapshot(conn: sqlite3.Connection, source: str) -> int:
    """Start the read transaction the whole copy is taken from; the source's schema version."""
    try:
        conn.execute("BEGIN")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the snapshot starts at the first read
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        has_events = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'").fetchone()
    except sqlite3.DatabaseError as error:
        if "not a database" in str(error) or "malformed" in str(error):
            raise BackupError(f"{source} is not a SQLite database ({error})") from None
        raise BackupError(f"cannot read {source}: {error}") from None
    if version < 1 or not has_events:
        raise BackupError(f"{source} is not an exporter history database (schema version {version}, no events table)")
    if version > SCHEMA_VERSION:
        raise BackupError(
            f"{source} is at schema version {version}, this exporter knows versions up to {SCHEMA_VERSION}: "
            "back it up with the exporter that wrote it"
        )
    return version


def _temporary_beside(target: Path) -> str:
    """A new hidden file in the destination's directory, so the final rename stays on one file system."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    return name


def _open_copy(path: str) -> sqlite3.Connection:
    return sqlite3.connect(path)


def _copy(conn: sqlite3.Connection, temporary: str, step_pages: int) -> None:
    copy = _open_copy(temporary)
    try:
        conn.backup(copy, pages=step_pages, sleep=BUSY_SLEEP_SECONDS)
        # The pages carry the live file's WAL flag; a backup is better as one self-contained
        # file (readable in place, from read-only media too). The exporter switches a
        # restored file back to WAL when it opens it.
        copy.execute("PRAGMA journal_mode = DELETE")
    except sqlite3.Error as error:
        raise BackupError(_sqlite_problem(error, Path(temporary).parent)) from None
    finally:
        copy.close()


def _verify(temporary: str, version: int, target: Path) -> tuple[int, Optional[int], int]:
    """(events, newest event block, schema version) of the copy, once it has passed its checks."""
    conn = sqlite3.connect(f"file:{quote(temporary)}?mode=ro", uri=True)
    try:
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check(10)")]
        if problems != ["ok"]:
            first = " ".join(problems[0].replace("*** in database main ***", "").split())[:200]
            raise BackupError(
                f"the copy failed PRAGMA integrity_check ({first}), so {target} was not written: "
                "the live database itself is probably damaged"
            )
        copied = conn.execute("PRAGMA user_version").fetchone()[0]
        if copied != version:
            raise BackupError(f"the copy is at schema version {copied}, the live file at {version}: {target} was not written")
        events, newest = conn.execute("SELECT count(*), max(block) FROM events").fetchone()
    except sqlite3.Error as error:
        raise BackupError(f"cannot check the copy: {error}; {target} was not written") from None
    finally:
        conn.close()
    return events, newest, copied


def _sync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_directory(directory: Path) -> None:
    """Make the rename itself durable; not every platform can open a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_quietly(temporary: str) -> None:
    for path in (temporary, f"{temporary}-journal"):
        try:
            os.unlink(path)
        except OSError:
            pass


_NO_SPACE = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
             errno.EFBIG: "file too large for this file system or limit"}


def _os_problem(error: OSError, directory: Path) -> str:
    if error.errno in _NO_SPACE:
        return f"cannot write the backup in {directory}: {_NO_SPACE[error.errno]}"
    if isinstance(error, PermissionError) or error.errno == errno.EROFS:
        return f"cannot write the backup in {directory}: {error.strerror} (the directory must be writable)"
    return f"cannot write the backup in {directory}: {error.strerror or error}"


def _sqlite_problem(error: sqlite3.Error, directory: Path) -> str:
    name = getattr(error, "sqlite_errorname", "")  # Python 3.11+
    if name == "SQLITE_FULL" or "database or disk is full" in str(error):
        return f"cannot write the backup in {directory}: no space left (SQLite: {error})"
    if name.startswith("SQLITE_IOERR") or "disk I/O error" in str(error):
        return f"cannot write the backup in {directory}: {error} (is the disk full or failing?)"
    return f"backup failed: {error}"


def _size_text(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
