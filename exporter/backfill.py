"""``history backfill``: record the changes of past blocks from an archive endpoint.

At the top level because it drives the chain session and the history store together,
as a refresh does.

The same pipeline as a live refresh, stepped through the past: a read pinned
at the start block is the baseline; then for each chunk of blocks, a read
pinned at its end with the chain's events of the chunk, the same change
detection and the same attribution. So the events equal what a live exporter
would have recorded (each at its block, with its cause), marked
``backfilled``. A chunk is shorter than a subnet's tempo, so at most one
epoch of a subnet falls in it and a permit change has one epoch to be at.

Bounded: one read in memory at a time. Resumable: each chunk's events and the
progress are committed in one transaction, so a killed backfill continues
from its last chunk. Polite: requests are paced to a budget per second.
Backfilled ranges never overlap: a backfill ends where the live history (or
an earlier backfill) begins, and a fresh install's backfill leaves its last
state as the live exporter's starting point.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable, Optional, TextIO

from exporter.chain.reader import EventRange
from exporter.chain.session import ChainSession
from exporter.chain.wire import RequestCounter
from exporter.history.store import HistoryStore
from exporter.history.writer import another_chains_history
from exporter.history.writer_lock import HistoryInUse, WriterLock
from exporter.snapshot.builder import build_snapshot
from exporter.snapshot.causes import changes_since
from exporter.snapshot.changes import HistoryState
from exporter.snapshot.read_rules import InvalidRead
from exporter.snapshot.snapshot_check import check_snapshot

BLOCKS_PER_DAY = 7200  # 12 s blocks
DEFAULT_CHUNK = 300  # blocks per step: under the shortest mainnet tempo (360)


@dataclass(frozen=True)
class Plan:
    start: int  # the baseline block
    end: int  # the last block backfilled
    chunk: int = DEFAULT_CHUNK
    requests_per_second: float = 10.0


class BackfillError(Exception):
    """Why a backfill cannot go on, in one line for the operator."""


def plan_range(store, *, head: int, days: Optional[float], from_block: Optional[int], to_block: Optional[int]) -> tuple[int, int]:
    """(start, end) of the blocks to backfill: before what the file already has, never over it."""
    progress = store.backfill_progress()
    if progress is not None and progress["done"] < progress["end"]:
        return progress["done"], progress["end"]  # an interrupted backfill: resume it
    limit = head
    for known in (store.first_block(), progress["start"] if progress else None):
        if known is not None:
            limit = min(limit, known)
    end = limit if to_block is None else min(to_block, limit)
    if from_block is not None:
        start = from_block
    else:
        start = end - int((days if days is not None else 30) * BLOCKS_PER_DAY)
    start = max(start, 1)
    if start >= end:
        raise BackfillError(f"nothing to backfill: blocks before {end} are already in the history or none were asked for")
    return start, end


class Backfill:
    """Steps ``plan`` through ``session`` (pinned reads at past blocks) into ``store``."""

    def __init__(self, session, counter, store, config, plan: Plan, *,
                 progress: Optional[TextIO] = None, stop: Optional[threading.Event] = None,
                 clock: Callable[[], float] = time.monotonic):
        self._session, self._counter, self._store, self._config = session, counter, store, config
        self._plan, self._out, self._stop, self._clock = plan, progress, stop or threading.Event(), clock
        self._events = 0

    def run(self) -> int:
        """Backfill to the end; returns the number of events recorded."""
        plan, store = self._plan, self._store
        generation = store.ensure_generation()
        earlier = store.backfill_progress()
        # Resuming keeps the first start: what lies before the file's history is from there on.
        origin = earlier["start"] if earlier and earlier["end"] == plan.end and earlier["done"] == plan.start else plan.start
        fresh = store.load_state().is_empty and store.last_block() is None
        started, done, first_request = self._clock(), plan.start, self._total()
        snapshot = self._snapshot(done, None)
        state, _ = changes_since(HistoryState.empty(), snapshot, self._config.history.stake_change_ratio, None)
        while done < plan.end and not self._stop.is_set():
            upto = min(done + plan.chunk, plan.end)
            snapshot = self._snapshot(upto, done)
            new_state, changes = changes_since(state, snapshot, self._config.history.stake_change_ratio, snapshot.events)
            changes = [replace(c, backfilled=True) for c in changes]
            last = upto == plan.end
            store.commit_backfill(changes, {"start": origin, "end": plan.end, "done": upto}, generation,
                                  baseline=(snapshot, new_state) if last and fresh else None)
            self._events += len(changes)
            state, done = new_state, upto
            self._report(done, started)
            self._pace(self._total() - first_request, self._clock() - started)
        if self._out is not None:
            self._out.write("\n" if self._out.isatty() else "")
        return self._events

    def _snapshot(self, block: int, since: Optional[int]):
        events = EventRange(since, self._plan.chunk) if since is not None else None
        for attempt in (1, 2):
            try:
                read, _ = self._session.read(self._config.scope, self._config.refresh_timeout_seconds, events, at_block=block)
            except Exception as error:  # noqa: BLE001 - one clear line, the backfill resumes from its last chunk
                held = _held_back(error)
                if held and attempt == 1:
                    continue  # an implausible step is confirmed by reading the same block again
                raise BackfillError(f"reading block {block} failed: {error}") from None
            if read.events is not None and read.events.failed is not None:
                # A step records every change of its blocks or none: it is read again when resumed.
                raise BackfillError(f"the events of blocks {read.events.first}..{block} could not be read: {read.events.failed}")
            snapshot = build_snapshot(read, self._config.scope)
            check_snapshot(snapshot)
            return snapshot
        raise AssertionError("unreachable")

    def _total(self) -> int:
        return sum(self._counter.totals().values())

    def _pace(self, requests: int, seconds: float) -> None:
        """Wait until the requests so far average at most the budget per second since the start:
        bursts are one step's requests (a pinned read and its events), never more."""
        wait = requests / self._plan.requests_per_second - seconds
        if wait > 0:
            self._stop.wait(wait)

    def _report(self, done: int, started: float) -> None:
        if self._out is None:
            return
        plan = self._plan
        total, covered = plan.end - plan.start, done - plan.start
        elapsed = self._clock() - started
        eta = elapsed / covered * (total - covered) if covered else 0
        width = 30
        bar = "#" * int(width * covered / total) + "." * (width - int(width * covered / total))
        line = (f"backfill [{bar}] {100 * covered / total:5.1f}% blocks {covered:,}/{total:,} (#{done:,})"
                f" events {self._events:,} requests {self._total():,} eta {_duration(eta)}")
        if self._out.isatty():
            self._out.write("\r" + line)
        else:
            self._out.write(line + "\n")
        self._out.flush()


def _held_back(error: BaseException) -> bool:
    cause = error
    while cause is not None:
        if isinstance(cause, InvalidRead) and getattr(cause, "held", False):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def run_backfill(config, *, archive: Optional[str], days: Optional[float], from_block: Optional[int],
                 to_block: Optional[int], requests_per_second: float, chunk: int, out: TextIO) -> int:
    """The ``history backfill`` command: 0 when done, 1 when it failed (it resumes), 130 when interrupted."""
    endpoint = archive or config.history.archive_endpoint
    if not endpoint:
        out.write("error: no archive endpoint: pass --archive.endpoint or set history.archive_endpoint\n")
        return 2
    if not endpoint.startswith(("ws://", "wss://")):
        out.write(f"error: --archive.endpoint: expected a ws:// or wss:// URL, got {endpoint!r}\n")
        return 2
    counter = RequestCounter()
    session = ChainSession(replace(config.chain, endpoints=(endpoint,)), counter)
    store = None
    stop = threading.Event()
    lock = WriterLock(config.history.path, "history backfill")
    try:
        lock.acquire()
        store = HistoryStore.open(config.history.path)
        recorded = store.claim_chain(config.chain.genesis_hash)
        if recorded != config.chain.genesis_hash.lower():
            out.write(f"error: {another_chains_history(config.history.path, recorded, config.chain.genesis_hash.lower())}\n")
            return 2
        head = session.finalized_block(config.chain.timeout_seconds)
        start, end = plan_range(store, head=head, days=days, from_block=from_block, to_block=to_block)
        plan = Plan(start, end, chunk=chunk, requests_per_second=requests_per_second)
        out.write(f"backfilling blocks {start:,}..{end:,} ({(end - start) / BLOCKS_PER_DAY:.1f} days) from {endpoint},"
                  f" at most {requests_per_second:g} requests/s, into {config.history.path}\n")
        began = time.monotonic()
        events = Backfill(session, counter, store, config, plan, progress=out, stop=stop).run()
        requests = sum(counter.totals().values())
        days_done = max((end - start) / BLOCKS_PER_DAY, 1e-9)
        out.write(f"done: {events:,} events over {end - start:,} blocks in {_duration(time.monotonic() - began)};"
                  f" {requests:,} requests ({requests / days_done:,.0f} a day of blocks)\n")
        return 0
    except KeyboardInterrupt:
        stop.set()
        out.write("\ninterrupted: what was committed stays; run the same command to resume\n")
        return 130
    except (BackfillError, OSError, HistoryInUse) as error:
        out.write(f"error: {error}\n")
        return 1
    except Exception as error:  # noqa: BLE001 - a read the session gave up on, a locked file: one line, resumable
        out.write(f"error: backfill stopped: {error} (run the same command to resume)\n")
        return 1
    finally:
        if store is not None:
            store.close()
        lock.release()
        session.close()


def run_backfill_command(config, args) -> int:
    """``history backfill`` with its command-line arguments (see exporter/history/cli.py)."""
    if args.days is not None and args.from_block is not None:
        sys.stderr.write("error: give --days or --from-block, not both\n")
        return 2
    for name, value in (("--days", args.days), ("--from-block", args.from_block), ("--to-block", args.to_block),
                        ("--requests-per-second", args.requests_per_second), ("--chunk-blocks", args.chunk_blocks)):
        if value is not None and not value > 0:
            sys.stderr.write(f"error: {name}: expected a positive number, got {value}\n")
            return 2
    return run_backfill(config, archive=args.archive_endpoint, days=args.days, from_block=args.from_block,
                        to_block=args.to_block, requests_per_second=args.requests_per_second,
                        chunk=args.chunk_blocks, out=sys.stderr)
