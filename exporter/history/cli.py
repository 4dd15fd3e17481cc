"""``history`` subcommands: list recorded changes, back the database up, or wipe the history safely."""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from exporter.history.backup import BackupError, backup_database
from exporter.history.queries import BadQuery, build_query
from exporter.history.schema import SchemaTooNew
from exporter.history.reading import query_events
from exporter.history.store import HistoryStore

EXIT_USAGE = 2
EXIT_FAILED = 1


def add_history_parser(sub, flags: argparse.ArgumentParser) -> None:
    history = sub.add_parser("history", parents=[flags],
                             help="list recorded changes, backfill them from an archive node, back up or reset the history database")
    history.add_argument("action", nargs="?", choices=("events", "backfill", "backup", "reset"), default="events",
                         help="events (default), backfill, backup PATH, or reset")
    history.add_argument("destination", nargs="?", metavar="PATH",
                         help="backup: the file to write, or a directory for a timestamped file in it")
    history.add_argument("--hotkey")
    history.add_argument("--netuid")
    history.add_argument("--kind")
    history.add_argument("--cause", help="only changes with this cause (a chain event such as SetChildren, or epoch, gap, ...)")
    history.add_argument("--since", help="unix seconds or ISO date/datetime (UTC)")
    history.add_argument("--until")
    history.add_argument("--limit", default="100", help="most events to show (default 100)")
    history.add_argument("--json", action="store_true", help="one JSON object per line")
    history.add_argument("--yes", action="store_true", help="reset without asking")
    history.add_argument("--force", action="store_true", help="backup: replace PATH if it exists")
    fill = history.add_argument_group("backfill")
    fill.add_argument("--archive.endpoint", dest="archive_endpoint", metavar="URL",
                      help="archive node to read the past from (default: history.archive_endpoint from the config)")
    fill.add_argument("--days", type=float, help="days of blocks before what the history holds (default 30)")
    fill.add_argument("--from-block", type=int, help="first block (instead of --days)")
    fill.add_argument("--to-block", type=int, help="last block (default: where the history begins, or the finalized head)")
    fill.add_argument("--requests-per-second", type=float, default=10.0,
                      help="request budget against the archive endpoint (default 10)")
    fill.add_argument("--chunk-blocks", type=int, default=300,
                      help="blocks per step, at most the shortest tempo (default 300)")


def run_history(args: argparse.Namespace, path: str) -> int:
    """Every action but backfill, which reads the chain (exporter.backfill); ``path`` is
    history.path as the config file and --history.path make it."""
    if args.action == "backup":
        return _backup(path, args.destination, args.force)
    if args.destination is not None:
        print(f"error: unexpected argument {args.destination!r} (only history backup takes a PATH)", file=sys.stderr)
        return EXIT_USAGE
    if args.action == "reset":
        return _reset(path, args.yes)
    return _events(path, args)


def _events(path: str, args: argparse.Namespace) -> int:
    if not Path(path).exists():
        print(f"error: no history database at {path}: the exporter creates it on its first refresh; give the "
              "configuration it runs with (--config.file, whose history.path it writes) or --history.path",
              file=sys.stderr)
        return EXIT_FAILED
    try:
        query = build_query({k: getattr(args, k) for k in ("hotkey", "netuid", "kind", "cause", "since", "until")})
        limit = int(args.limit)
        if limit < 1:
            raise ValueError
    except BadQuery as error:
        print(f"error: --{error}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError:
        print(f"error: --limit: expected a positive integer, got {args.limit!r}", file=sys.stderr)
        return EXIT_USAGE
    shown, cursor = 0, None
    try:
        while shown < limit:
            page_query = query.__class__(**{**query.__dict__, "before_id": cursor, "limit": min(1000, limit - shown)})
            events, cursor = query_events(path, page_query)
            for event in events:
                print(json.dumps(event) if args.json else _line(event))
            shown += len(events)
            if cursor is None:
                break
        sys.stdout.flush()
    except sqlite3.Error as error:
        print(f"error: cannot read {path}: {error}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:
        # The reader went away (history | head): what it wanted was printed. Point stdout at
        # /dev/null so the interpreter's own flush at exit does not fail on the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if not shown and not args.json:
        print("no matching events", file=sys.stderr)
    return 0


def _line(event: dict) -> str:
    when = datetime.fromtimestamp(event["time"], tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    who = f"{event['hotkey']} sn{event['netuid']}" if event["hotkey"] else f"sn{event['netuid']}"  # a subnet's own event
    edge = f" parent={event['parent']}" if event["parent"] and event["parent"] != event["hotkey"] else ""
    change = _change(event["kind"], event["old"], event["new"])
    block = f"#{event['block_from']}..{event['block']}" if event.get("block_from") is not None else f"#{event['block']}"
    cause = ""
    if event.get("cause"):
        where = f" extrinsic {event['extrinsic']}" if event.get("extrinsic") is not None else ""
        cause = f"  cause={event['cause']}{where}" + (" (backfilled)" if event.get("backfilled") else "")
    return f"{when} {block} {event['kind']:<18} {who}{edge}{change}{cause}"


# Kinds whose values are ratios 0-1 (a take, a proportion), printed as percentages.
_RATIO_KINDS = frozenset({"take_changed", "edge_added", "edge_removed", "proportion_changed"})
_STAKE_KINDS = frozenset({"own_stake_moved", "stake_weight_moved"})
_PENDING_KINDS = frozenset({"pending_scheduled", "pending_applied", "pending_dropped"})


def _change(kind: str, old, new) -> str:
    """The old and new values as a reader wants them (``--json`` keeps them raw)."""
    if kind in ("permit_gained", "permit_lost"):
        return ""  # the kind says it all
    if kind in _PENDING_KINDS:
        values = [v for v in (old, new) if v is not None or kind == "pending_scheduled"]
        return " " + " -> ".join(_pending(v) for v in values)
    show = _percent if kind in _RATIO_KINDS else _alpha if kind in _STAKE_KINDS else json.dumps
    return f" {'none' if old is None else show(old)} -> {'none' if new is None else show(new)}"


def _percent(ratio) -> str:
    """0.015259021896696421 -> 1.53 %; 0.2 -> 20 %."""
    if not isinstance(ratio, (int, float)):
        return json.dumps(ratio)
    return f"{ratio * 100:.2f}".rstrip("0").rstrip(".") + " %"


def _alpha(amount) -> str:
    return f"{amount:,.2f}" if isinstance(amount, (int, float)) else json.dumps(amount)


def _pending(value) -> str:
    """A pending child set: its children with their shares, and the block after which it applies."""
    if value is None:
        return "none"
    if not isinstance(value, dict) or not isinstance(value.get("children"), list):
        return json.dumps(value)
    children = ", ".join(f"{child} {_percent(share)}" for share, child in value["children"]) or "no children (revokes all)"
    cooldown = value.get("cooldown_block")
    return f"[{children}]" + (f" after block {cooldown}" if cooldown is not None else "")


def _backup(path: str, destination: Optional[str], force: bool) -> int:
    if not destination:
        print("error: history backup needs a PATH: the backup file, or a directory for a timestamped one",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        backup = backup_database(path, destination, force=force)
    except BackupError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(backup.summary())
    return 0


def _reset(path: str, yes: bool) -> int:
    if not Path(path).exists():
        print(f"nothing to reset: no history database at {path}")
        return 0
    if not yes:
        if not sys.stdin.isatty():
            print("error: refusing to reset without confirmation: pass --yes", file=sys.stderr)
            return EXIT_USAGE
        answer = input(f"Delete every recorded event and sample in {path}? Type 'reset' to confirm: ")
        if answer.strip() != "reset":
            print("not reset")
            return EXIT_FAILED
    try:
        store = HistoryStore.open(path)
        try:
            store.reset()
        finally:
            store.close()
    except SchemaTooNew as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except sqlite3.Error as error:
        print(f"error: cannot reset {path}: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(f"history reset: {path}")
    return 0
