"""How the history command prints an event: values as a reader wants them, raw only with --json."""

from __future__ import annotations

from exporter.history.cli import _line

H = "5FeCZE1NBqdJX4VxVZwgJLdz2DmEicJpPzbQuNgBR5bQc1xa"
C = "5GcTfa8N6uWHZ2CnjK5ToAk5omfozWMrPSiTKQ7KwGA5unFj"


def event(kind, old, new, **fields):
    base = {"id": 1, "block": 4718112, "time": 1_793_628_192.0, "kind": kind, "hotkey": H, "netuid": 8,
            "parent": None, "child": None, "old": old, "new": new, "cause": None, "extrinsic": None,
            "block_from": None, "backfilled": False}
    return {**base, **fields}


def test_a_take_is_a_percentage():
    # 1000/65535 and 5898/65535, as the chain stores takes
    line = _line(event("take_changed", 0.015259021896696421, 0.08999771114671549, cause="ChildKeyTakeSet", extrinsic=7))
    assert line == (f"2026-11-02 14:03:12 #4718112 take_changed       {H} sn8 1.53 % -> 9 %"
                     "  cause=ChildKeyTakeSet extrinsic 7")


def test_a_proportion_is_a_percentage_and_names_the_parent():
    line = _line(event("proportion_changed", 0.5, 0.25, hotkey=C, parent=H, child=C))
    assert line.endswith(f"{C} sn8 parent={H} 50 % -> 25 %")
    assert _line(event("edge_added", None, 1.0, hotkey=C, parent=H, child=C)).endswith("none -> 100 %")


def test_a_pending_set_is_a_readable_list():
    scheduled = {"children": [[0.75, C], [0.25, H]], "cooldown_block": 4725312}
    line = _line(event("pending_scheduled", None, scheduled, parent=H))
    assert line.endswith(f"none -> [{C} 75 %, {H} 25 %] after block 4725312")
    revoke = _line(event("pending_scheduled", scheduled, {"children": [], "cooldown_block": 4725400}, parent=H))
    assert revoke.endswith("-> [no children (revokes all)] after block 4725400")
    applied = _line(event("pending_applied", scheduled, None, parent=H))
    assert applied.endswith(f"[{C} 75 %, {H} 25 %] after block 4725312")
    assert "{" not in applied


def test_stake_moves_are_amounts_and_a_permit_needs_no_values():
    assert _line(event("stake_weight_moved", 12000.5, 11000.123456)).endswith("12,000.50 -> 11,000.12")
    assert _line(event("permit_lost", True, False, cause="epoch")).endswith(f"{H} sn8  cause=epoch")


def test_a_net_change_shows_its_block_range():
    line = _line(event("take_changed", 0.1, 0.2, block_from=4718000, cause="gap"))
    assert "#4718000..4718112" in line


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path):
    """`history | head -1` on a file with more events than a pipe holds: the listing ends quietly."""
    import sqlite3
    import subprocess
    import sys

    from exporter.history.store import HistoryStore

    path = tmp_path / "h.db"
    HistoryStore.open(str(path)).close()
    with sqlite3.connect(path) as conn:
        conn.executemany("INSERT INTO events (block, time, kind, hotkey, netuid, old_value, new_value) "
                         "VALUES (?, ?, 'take_changed', ?, 8, '0.01', '0.02')",
                         [(b, 1_793_628_192.0 + b, H) for b in range(5000)])
    listing = subprocess.Popen([sys.executable, "-m", "exporter", "history", "--history.path", str(path),
                                "--limit", "5000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert listing.stdout is not None
    first = listing.stdout.readline()
    listing.stdout.close()  # the reader goes away with ~4,999 lines unread
    _, err = listing.communicate(timeout=60)
    assert first.startswith(b"20") and b"take_changed" in first
    assert listing.returncode == 0, err.decode()
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()
