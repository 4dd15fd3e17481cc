"""``history backup PATH``: a consistent, checked copy of the live history database.

Fast tests run the backup against a writer committing in another thread and
through the command line's failure cases; one system test backs up the real
exporter process while it records, restores the copy and restarts it.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from exporter.cli import build_parser, main
from exporter.history import backup as backup_module
from exporter.history.backup import BackupError, backup_database
from exporter.history.schema import SCHEMA_VERSION
from exporter.history.store import Retention
from exporter.history.writer import HistoryWriter
from simnode import SIMNODE_GENESIS_HASH, ChainState, SimNode
from tests import tricky_chain as t
from tests.conftest import write_tricky_chain
from tests.test_history_reset import snapshot
from tests.test_packaging import unit
from tests.test_scenario_process import ExporterProcess, gauge

REPO = Path(__file__).resolve().parent.parent
NOW = 1_767_323_700.0  # 2026-01-02 03:15:00 UTC


def with_take(block: int, take: int):
    """The tricky chain at ``block`` with M's childkey take set to ``take``."""
    return snapshot(block, takes={**{(h, 1): v for h, v in t.TAKES_1.items() if v}, (t.M, 1): take})


def recorded_history(path: Path, changes: int = 3) -> Path:
    """A history file with a baseline and ``changes`` take changes of M (blocks 101...)."""
    writer = HistoryWriter(str(path), Retention(), stake_change_ratio=0.05)
    try:
        assert writer.record(snapshot(100)).ok
        for i in range(changes):
            assert writer.record(with_take(101 + i, 6000 + i)).events
    finally:
        writer.close()
    return path


def rows(path: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def execute(path: Path, sql: str, *params) -> None:
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute(sql, *params)
    finally:
        conn.close()


def pad(path: Path, pages: int) -> None:
    """Make the file ``pages`` 4 KiB pages bigger, in a table of its own."""
    execute(path, "CREATE TABLE padding (data BLOB)")
    execute(path, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
                  " INSERT INTO padding SELECT randomblob(4000) FROM n", (pages,))


def events(path: Path) -> list[tuple]:
    return rows(path, "SELECT * FROM events ORDER BY id")


def history(*args: str) -> list[str]:
    return ["history", *args]


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith((".tmp", "-journal", "-wal", "-shm")))


# -- what a backup holds ------------------------------------------------------------


def test_a_backup_is_a_checked_copy_and_one_line_says_what_it_holds(tmp_path, capsys):
    live = recorded_history(tmp_path / "history.db")
    out = tmp_path / "backups"
    out.mkdir()
    target = out / "copy.db"
    capsys.readouterr()  # the writer's log lines
    assert main(history("--history.path", str(live), "backup", str(target))) == 0
    printed = capsys.readouterr()
    size = target.stat().st_size
    assert printed.err == ""
    assert printed.out == f"backup written: {target} ({size / 1024:.1f} KiB, 3 events, newest event at block 103)\n"
    assert events(target) == events(live)
    assert rows(target, "PRAGMA integrity_check") == [("ok",)]
    assert rows(target, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert rows(target, "SELECT value FROM meta WHERE key = 'generation'") == \
        rows(live, "SELECT value FROM meta WHERE key = 'generation'"), "same generation: no re-baseline after a restore"
    assert rows(target, "PRAGMA journal_mode") == [("delete",)], "one self-contained file"
    assert leftovers(out) == []


def test_an_empty_history_says_so(tmp_path):
    live = recorded_history(tmp_path / "history.db", changes=0)
    made = backup_database(str(live), str(tmp_path / "copy.db"))
    assert (made.events, made.newest_block) == (0, None)
    assert made.summary().endswith("0 events, no events yet)")


def test_a_directory_gets_a_timestamped_file_named_after_the_database(tmp_path):
    live = recorded_history(tmp_path / "history.db")
    out = tmp_path / "backups"
    out.mkdir()
    made = backup_database(str(live), str(out), now=NOW)
    assert made.path == str(out / "history-20260102T031500Z.db")
    assert events(Path(made.path)) == events(live)
    with pytest.raises(BackupError, match="exists: pass --force"):
        backup_database(str(live), str(out), now=NOW)  # the same second again
    assert backup_database(str(live), str(out), now=NOW + 1).path == str(out / "history-20260102T031501Z.db")


def test_an_existing_file_is_replaced_only_with_force(tmp_path, capsys):
    live = recorded_history(tmp_path / "history.db")
    target = tmp_path / "copy.db"
    target.write_bytes(b"yesterday's backup")
    capsys.readouterr()
    assert main(history("--history.path", str(live), "backup", str(target))) == 1
    assert capsys.readouterr().err == f"error: {target} exists: pass --force to replace it\n"
    assert target.read_bytes() == b"yesterday's backup"
    assert main(history("--history.path", str(live), "backup", str(target), "--force")) == 0
    assert events(target) == events(live)


def test_a_cleanly_stopped_database_is_left_without_journal_files(tmp_path):
    """A stopped exporter leaves no -wal or -shm; the backup (often root, from cron) must not create any."""
    live = recorded_history(tmp_path / "history.db")
    assert leftovers(tmp_path) == []
    backup_database(str(live), str(tmp_path / "copy.db"))
    assert leftovers(tmp_path) == []


# -- against a writer committing in another thread ------------------------------------------


def test_a_backup_taken_while_a_writer_commits_is_one_committed_state(tmp_path):
    """The writer commits a take change of M at every block, without pause; backups copied
    one page per step (so that commits land between the steps of every copy) each hold the
    history as of one commit: events a prefix of the live file's, and the state table
    agreeing with the last event."""
    live = recorded_history(tmp_path / "history.db", changes=1)
    pad(live, 1000)  # ~4 MiB: a copy takes about a thousand steps
    stop = threading.Event()
    commits: list[float] = []
    failures: list[str] = []
    committed = threading.Event()

    def write() -> None:
        writer = HistoryWriter(str(live), Retention(), stake_change_ratio=0.05)
        block = 200
        try:
            while not stop.is_set():
                block += 1
                if not writer.record(with_take(block, 6000 + block % 2)).ok:
                    failures.append(f"block {block}")
                commits.append(time.monotonic())
                committed.set()
        finally:
            writer.close()

    thread = threading.Thread(target=write)
    thread.start()
    copies, overlapping = [], 0
    try:
        assert committed.wait(60), "the writer committed nothing"
        for i in range(20):
            started = time.monotonic()
            copy = tmp_path / f"copy-{i}.db"
            backup_database(str(live), str(copy), step_pages=1)
            overlapping += sum(started < c < time.monotonic() for c in commits)
            copies.append(copy)
            if overlapping >= 5 and i >= 2:
                break
    finally:
        stop.set()
        thread.join()
    assert not failures, f"the writer failed while backups ran: {failures}"
    assert overlapping >= 5, f"only {overlapping} commits landed while a backup was being copied"
    final = events(live)
    for copy in copies:
        held = events(copy)
        assert rows(copy, "PRAGMA integrity_check") == [("ok",)]
        assert held == final[: len(held)], f"{copy.name}: not a committed state of the live file"
        (take,), = rows(copy, f"SELECT childkey_take FROM validator_state WHERE hotkey = '{t.M}' AND netuid = 1")
        (last,), = rows(copy, "SELECT new_value FROM events ORDER BY id DESC LIMIT 1")
        assert json.loads(last) == take, f"{copy.name}: the state table and the events are from different commits"
    assert len(events(copies[-1])) > len(events(copies[0])), "the copies followed the writer"


# -- refusals: one line, a non-zero exit, nothing written ------------------------------------


def run_backup(capsys, live, destination, *more) -> tuple[int, str]:
    capsys.readouterr()
    code = main(history("--history.path", str(live), "backup", str(destination), *more))
    printed = capsys.readouterr()
    assert printed.out == "" and printed.err.count("\n") == 1, printed
    return code, printed.err


def test_a_missing_database_is_an_error_and_is_not_created(tmp_path, capsys):
    code, err = run_backup(capsys, tmp_path / "history.db", tmp_path / "copy.db")
    assert (code, err) == (1, f"error: no history database at {tmp_path / 'history.db'} "
                              "(the exporter creates it on its first refresh)\n")
    assert list(tmp_path.iterdir()) == []


def test_the_live_file_itself_is_refused_under_any_name(tmp_path, capsys):
    live = recorded_history(tmp_path / "history.db")
    before = live.read_bytes()
    (tmp_path / "link.db").symlink_to(live)
    os.link(live, tmp_path / "hardlink.db")
    for name in ("history.db", "./history.db", "link.db", "hardlink.db", "history.db-wal"):
        code, err = run_backup(capsys, live, f"{tmp_path}/{name}", "--force")
        assert code == 1 and "is the live history database" in err, (name, err)
    assert live.read_bytes() == before and events(live)


def test_a_destination_that_cannot_be_written(tmp_path, capsys):
    live = recorded_history(tmp_path / "history.db")
    code, err = run_backup(capsys, live, tmp_path / "missing" / "copy.db")
    assert code == 1 and err == f"error: cannot write the backup: the directory {tmp_path / 'missing'} does not exist\n"
    code, err = run_backup(capsys, live, f"{tmp_path}/missing/")
    assert code == 1 and "does not exist" in err
    code, err = run_backup(capsys, live, tmp_path / "history.db" / "copy.db")
    assert code == 1 and "is not a directory" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories")
def test_a_read_only_directory(tmp_path, capsys):
    live = recorded_history(tmp_path / "history.db")
    out = tmp_path / "backups"
    out.mkdir(mode=0o500)
    try:
        code, err = run_backup(capsys, live, out)
    finally:
        out.chmod(0o700)
    assert code == 1 and err.startswith(f"error: cannot write the backup in {out}: Permission denied")


def test_a_full_database_or_disk_leaves_nothing_behind(tmp_path, capsys, monkeypatch):
    """SQLite's own "database or disk is full": the copy's file is capped at a few pages."""
    live = recorded_history(tmp_path / "history.db")
    out = tmp_path / "backups"
    out.mkdir()
    open_copy = backup_module._open_copy

    def tiny(path: str) -> sqlite3.Connection:
        conn = open_copy(path)
        conn.execute("PRAGMA max_page_count = 3")
        return conn

    monkeypatch.setattr(backup_module, "_open_copy", tiny)
    code, err = run_backup(capsys, live, out / "copy.db")
    assert code == 1 and err.startswith(f"error: cannot write the backup in {out}: no space left")
    assert list(out.iterdir()) == []


def test_no_space_when_syncing_leaves_the_previous_backup(tmp_path, capsys, monkeypatch):
    live = recorded_history(tmp_path / "history.db")
    target = tmp_path / "copy.db"
    target.write_bytes(b"the previous backup")

    def no_space(path: str) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    monkeypatch.setattr(backup_module, "_sync", no_space)
    code, err = run_backup(capsys, live, target, "--force")
    assert (code, err) == (1, f"error: cannot write the backup in {tmp_path}: no space left on the device\n")
    assert target.read_bytes() == b"the previous backup"
    assert leftovers(tmp_path) == []


def test_a_write_the_kernel_refuses_in_the_real_command(tmp_path):
    """The file-size limit (RLIMIT_FSIZE) makes the kernel refuse the copy's writes past 64 KiB
    (above the 32 KiB the live file's -shm takes), as a full disk refuses them, in
    ``python -m exporter history backup``."""
    live = recorded_history(tmp_path / "history.db", changes=3)
    pad(live, 100)
    out = tmp_path / "backups"
    out.mkdir()
    limited = ("import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536)); "
               "from exporter.cli import main; sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", limited, "history", "--history.path", str(live), "backup", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(f"error: cannot write the backup in {out}: ") and done.stderr.count("\n") == 1, done.stderr
    assert list(out.iterdir()) == []


def test_what_is_not_a_history_database_is_refused(tmp_path, capsys):
    not_sqlite = tmp_path / "notes.db"
    not_sqlite.write_text("not a database " * 100)
    code, err = run_backup(capsys, not_sqlite, tmp_path / "a.db")
    assert code == 1 and "is not a SQLite database" in err
    other = tmp_path / "other.db"
    execute(other, "CREATE TABLE t (x)")
    code, err = run_backup(capsys, other, tmp_path / "b.db")
    assert code == 1 and "is not an exporter history database" in err
    newer = recorded_history(tmp_path / "newer.db", changes=0)
    execute(newer, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    code, err = run_backup(capsys, newer, tmp_path / "c.db")
    assert code == 1 and f"schema version {SCHEMA_VERSION + 1}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["newer.db", "notes.db", "other.db"]


def test_a_damaged_database_fails_the_check_and_is_not_written(tmp_path, capsys):
    live = recorded_history(tmp_path / "history.db", changes=30)
    (page_size,), = rows(live, "PRAGMA page_size")
    (root,), = rows(live, "SELECT rootpage FROM sqlite_master WHERE name = 'events_by_time'")
    with open(live, "r+b") as f:  # scramble the index's cells, keep its page header
        f.seek((root - 1) * page_size + 12)
        f.write(bytes(range(256)) * ((page_size - 12) // 256))
    code, err = run_backup(capsys, live, tmp_path / "copy.db")
    assert code == 1 and "failed PRAGMA integrity_check" in err and "was not written" in err, err
    assert not (tmp_path / "copy.db").exists() and leftovers(tmp_path) == []


def test_backup_needs_a_path_and_other_actions_take_none(tmp_path, capsys):
    live = recorded_history(tmp_path / "history.db")
    capsys.readouterr()
    assert main(history("--history.path", str(live), "backup")) == 2
    assert "history backup needs a PATH" in capsys.readouterr().err
    assert main(history("--history.path", str(live), "events", "somewhere")) == 2
    assert "unexpected argument 'somewhere'" in capsys.readouterr().err


# -- the real exporter: back up while it records, restore, restart -----------------------------


def churn(state: ChainState, stop: threading.Event, blocks: list[int]) -> None:
    """C4's take changes in a new block every 100 ms: the exporter commits an event at each refresh."""
    take = 1000
    while not stop.wait(0.1):
        take = 1000 + (take + 137) % 5000
        state.set("ChildkeyTake", [t.C4, 1], take)
        blocks.append(state.commit_block()[0])


def change_take(state: ChainState, hotkey: str, take: int) -> int:
    state.set("ChildkeyTake", [hotkey, 1], take)
    return state.commit_block()[0]


def test_a_restored_backup_of_the_running_exporter_carries_on_its_history(tmp_path):
    state = ChainState()
    write_tricky_chain(state)
    db, config, out = tmp_path / "history.db", tmp_path / "config.yaml", tmp_path / "backups"
    out.mkdir()
    with SimNode(state) as node:
        config.write_text(
            f"chain:\n  endpoints: [{node.url}]\n  genesis_hash: '{SIMNODE_GENESIS_HASH}'\nrefresh:\n  interval_seconds: 1\n"
            f"scope:\n  min_stake_weight: 100\nhistory:\n  path: {db}\n  samples_scope: all\n"
        )
        exporter = ExporterProcess(config, tmp_path)
        try:
            exporter.start()
            exporter.wait_for_block(state.commit_block()[0])  # the baseline
            for i, hotkey in enumerate((t.C1, t.C2, t.C3)):
                exporter.wait_for_block(change_take(state, hotkey, 2000 + i))
            stop, churned = threading.Event(), []
            churner = threading.Thread(target=churn, args=(state, stop, churned), daemon=True)
            churner.start()
            try:
                exporter.wait_until(lambda text: bool(churned) and (gauge(text, "bittensor_chain_block") or 0) > churned[0],
                                    "churn recorded")
                done = subprocess.run(
                    [sys.executable, "-m", "exporter", "history", "backup", str(out), "--config.file", str(config)],
                    cwd=REPO, capture_output=True, text=True, timeout=60,
                )
                after_backup = churned[-1]
                exporter.wait_until(lambda text: (gauge(text, "bittensor_chain_block") or 0) > after_backup, "more churn")
            finally:
                stop.set()
                churner.join()
            assert done.returncode == 0 and done.stderr == "", done.stderr
            (copy,) = out.iterdir()
            assert done.stdout.startswith(f"backup written: {copy} (") and done.stdout.count("\n") == 1
            exporter.wait_for_block(churned[-1])
            exporter.stop()
            live_before_restore = events(db)
            kept = events(copy)
            assert rows(copy, "PRAGMA integrity_check") == [("ok",)]
            assert len(kept) > 3 and kept == live_before_restore[: len(kept)], "the backup is one committed state"

            # restore: stopped; stale journal files removed; the backup copied back
            for stale in (Path(f"{db}-wal"), Path(f"{db}-shm")):
                stale.unlink(missing_ok=True)
            shutil.copyfile(copy, db)
            while_stopped = change_take(state, t.C5, 4321)
            exporter.start()
            exporter.wait_for_block(while_stopped)
            live_block = change_take(state, t.C1, 3333)
            metrics = exporter.wait_for_block(live_block)
            exporter.stop()
        finally:
            exporter.close()

    after = events(db)
    assert after[: len(kept)] == kept, "the restored events are kept"
    new = [(block, kind, hotkey) for _, block, _, kind, hotkey, *_ in after[len(kept):]]
    assert (while_stopped, "take_changed", t.C5) in new, "state from the backup, not a new baseline"
    assert (live_block, "take_changed", t.C1) in new, "recording continues"
    # C4's churn after the backup: at most its net change, once, at the first refresh after the restore
    assert set(new) <= {(while_stopped, "take_changed", t.C5), (while_stopped, "take_changed", t.C4),
                        (live_block, "take_changed", t.C1)}, new
    keys = [row[1:] for row in after]
    assert len(keys) == len(set(keys)), "no event is recorded twice"
    assert gauge(metrics, "bittensor_exporter_history_writes_total", '{result="error"}') == 0
    assert "history was reset" not in (tmp_path / f"exporter-{exporter.runs}.log").read_text()


# -- docs/history.md ------------------------------------------------------------------------


def test_the_readme_cron_line_backs_up_what_the_service_writes():
    readme = (REPO / "docs" / "history.md").read_text()
    section = readme[readme.index("## Backups"):]
    (line,) = re.findall(r"^15 3 \* \* \* .*$", section, re.MULTILINE)
    user, cd, directory, and_, *command = shlex.split(line)[5:]
    service = unit()
    assert user == service["Service.User"][0]
    assert (cd, and_) == ("cd", "&&")
    assert directory == service["Service.WorkingDirectory"][0].replace("%S", "/var/lib"), "history.path resolves as in the service"
    exec_start = shlex.split(service["Service.ExecStart"][0])
    assert command[0] == exec_start[0]
    args = build_parser().parse_args(command[1:-1])  # less the >/dev/null
    assert (args.command, args.action, args.config_file) == ("history", "backup", exec_start[exec_start.index("--config.file") + 1])
    assert command[-1] == ">/dev/null"
    assert f"install -d -m 0750 -o {user} -g {user} {args.destination.rstrip('/')}" in " ".join(section.split())
    assert f"{directory}/history.db-wal" in section and f"-o {user} -g {user}" in section
