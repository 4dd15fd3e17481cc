"""Parse and answer history queries, shared by the HTTP API and the CLI.

``/api/v1/events?hotkey=&netuid=&kind=&cause=&since=&until=&limit=&cursor=`` returns
``{"events": [...], "next_cursor": N|null}``, newest first; pass ``cursor``
back to get the next page.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import datetime, timezone
from typing import Mapping, Optional
from urllib.parse import parse_qs

from exporter.snapshot.changes import CHANGE_KINDS
from exporter.snapshot.causes import CAUSES
from exporter.history.reading import MAX_PAGE, EventQuery, query_events
from exporter.ss58 import is_valid_ss58

PARAMS = ("hotkey", "netuid", "kind", "cause", "since", "until", "limit", "cursor")


class BadQuery(ValueError):
    """A query parameter a user got wrong; the message names it."""


def parse_moment(text: str, name: str) -> float:
    """Unix seconds, an ISO date (2026-11-01, midnight UTC) or an ISO datetime (no offset: UTC)."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadQuery(f"{name}: expected unix seconds or an ISO date like 2026-11-01, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _integer(text: str, name: str, lo: int, hi: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise BadQuery(f"{name}: expected an integer, got {text!r}") from None
    if not lo <= value <= hi:
        raise BadQuery(f"{name}: must be between {lo} and {hi}, got {value}")
    return value


def build_query(params: Mapping[str, Optional[str]]) -> EventQuery:
    """An EventQuery from raw string parameters (None or absent: not filtered)."""
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise BadQuery(f"unknown parameter {unknown[0]!r} (allowed: {', '.join(PARAMS)})")
    get = {k: v for k, v in params.items() if v not in (None, "")}
    hotkey = get.get("hotkey")
    if hotkey is not None and not is_valid_ss58(hotkey):
        raise BadQuery(f"hotkey: not a valid SS58 address: {hotkey!r}")
    kind = get.get("kind")
    if kind is not None and kind not in CHANGE_KINDS:
        raise BadQuery(f"kind: must be one of {', '.join(CHANGE_KINDS)}, got {kind!r}")
    cause = get.get("cause")
    if cause is not None and cause not in CAUSES:
        raise BadQuery(f"cause: must be one of {', '.join(sorted(CAUSES))}, got {cause!r}")
    return EventQuery(
        hotkey=hotkey,
        cause=cause,
        netuid=_integer(get["netuid"], "netuid", 0, 65535) if "netuid" in get else None,
        kind=kind,
        since=parse_moment(get["since"], "since") if "since" in get else None,
        until=parse_moment(get["until"], "until") if "until" in get else None,
        before_id=_integer(get["cursor"], "cursor", 1, 2**62) if "cursor" in get else None,
        limit=_integer(get["limit"], "limit", 1, MAX_PAGE) if "limit" in get else 100,
    )


# HTTP threads query with their own short-lived read-only connections (never
# the writer's); a few at a time, so a flood of API requests can't hold every
# connection slot on slow queries or starve the refresh thread's writes.
MAX_CONCURRENT_QUERIES = 4
_query_slots = threading.BoundedSemaphore(MAX_CONCURRENT_QUERIES)


def answer_events(db_path: str, query_string: str) -> tuple[int, bytes]:
    """(HTTP status, JSON body) for one API request, on the caller's thread and connection."""
    raw = parse_qs(query_string, keep_blank_values=True)
    repeated = [k for k, v in raw.items() if len(v) > 1]
    try:
        if repeated:
            raise BadQuery(f"{repeated[0]}: given more than once")
        query = build_query({k: v[0] for k, v in raw.items()})
    except BadQuery as error:
        return 400, json.dumps({"error": str(error)}).encode()
    if not _query_slots.acquire(timeout=1):
        return 503, json.dumps({"error": "too many history queries at once; retry shortly"}).encode()
    try:
        events, cursor = query_events(db_path, query)
    except sqlite3.Error as error:
        return 503, json.dumps({"error": f"history database unavailable: {error}"}).encode()
    finally:
        _query_slots.release()
    return 200, json.dumps({"events": events, "next_cursor": cursor}).encode()
