"""``python -m bench.history_events``: what history from the chain's events costs (issue 14).

(a) **Events per refresh.** A simulated node (its own process) serves a base chain (the
tricky chain, or ``--base mainnet``: ``simnode.scenarios.mainnet_scale``) followed by
blocks holding ``--extrinsics`` signed extrinsics each, deposited as the runtime's
metadata lays them out: ``Balances.Withdraw`` (the fee), the call's own event
(``SubtensorModule.WeightsSet`` for most, ``StakeAdded``/``StakeRemoved`` with the storage
change for the rest), ``TransactionPayment.TransactionFeePaid`` and ``System.ExtrinsicSuccess``.
This process reads the events of the last N blocks with the exporter's own code
(``exporter.chain.events.read_window`` over a reader pinned at the head), with the range
call (``state_queryStorage``) and against a node that refuses it (``deny_unsafe_rpc``: one
``state_queryStorageAt`` a block). Requests and bytes are counted at the node; CPU is this
process's ``time.process_time()`` (the node's is its own). Attribution is
``exporter.snapshot.causes.attribute`` between reads at head - N and head, timed alone.

(b) **Backfill of a simulated month.** An archive node (its own process) steps the tricky
chain through ``--days`` x 7,200 blocks with ``advance_to`` (epochs run, due child sets
apply with ``SetChildren``) and a script of changes made by ``simnode.actions`` (takes, child
sets scheduled, stake moves, a minimum-take change, a hotkey swap); then the real command
``python -m exporter history backfill`` runs as a child process against it, paced to
``--requests-per-second``. Wall time and peak RSS are the child's (``os.wait4``); requests
are counted at the node, with the busiest 10 s window.

    python -m bench.history_events              # tricky base, then the month: about 6 minutes
    python -m bench.history_events --base mainnet --skip-month   # (a) at mainnet scale
    python -m bench.history_events --quick      # seconds: the smoke test's run
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from simnode import SIMNODE_GENESIS_HASH, ChainState, SimNode

SIZES = (5, 256)  # a 60 s refresh; a catch-up after an outage (history.catch_up_blocks)
EXTRINSICS = 40  # signed extrinsics per block (see BENCHMARKS.md for the figure)


class CountingNode(SimNode):
    """A SimNode that also counts bytes each way and stamps every request."""

    def reset_counters(self) -> None:
        super().reset_counters()
        self.bytes_in = self.bytes_out = 0
        self.stamps: list[float] = []

    async def _frame(self, ws, message) -> None:
        self.bytes_in += len(message)
        self.stamps.append(time.monotonic())
        await super()._frame(ws, message)

    async def _send(self, ws, text: str) -> None:  # noqa: D401 - SimNode's is static
        self.bytes_out += len(text)
        await SimNode._send(ws, text)


class _Served:
    """What both node workers share: serving, counters, the knob for a node that refuses the range call."""

    state: ChainState
    node: CountingNode

    def url(self) -> str:
        return self.node.url

    def head(self) -> int:
        return self.state.head.number

    def deny_unsafe(self, flag: bool) -> None:
        self.state.deny_unsafe_rpc = flag

    def reset_counters(self) -> None:
        self.node.reset_counters()

    def counters(self) -> dict[str, Any]:
        node = self.node
        stamps = sorted(node.stamps)
        busiest = max((bisect.bisect_right(stamps, s + 10) - i for i, s in enumerate(stamps)), default=0)
        return {"requests": sum(node.requests.values()), "by_method": dict(node.requests), "bytes_in": node.bytes_in,
                "bytes_out": node.bytes_out, "busiest_10s": busiest}

    def close(self) -> None:
        self.node.stop()


class BusyChain(_Served):
    """A base chain, then ``blocks`` blocks of ``extrinsics`` signed extrinsics each."""

    def __init__(self, base: str, blocks: int, extrinsics: int, seed: int = 0):
        from simnode.actions import add_stake, remove_stake

        self.state = state = ChainState(393)
        stakes = _write_base(state, base, seed)
        rng = random.Random(seed)
        sizes = []
        for _ in range(blocks):
            for _ in range(extrinsics):
                coldkey, hotkey, netuid, uid = rng.choice(stakes)
                fee = rng.randrange(10_000, 2_000_000)
                kind = rng.random()
                if kind < 0.1:
                    index = add_stake(state, coldkey, hotkey, netuid, 10**9, fee=fee)
                elif kind < 0.15:
                    index = remove_stake(state, coldkey, hotkey, netuid, 10**8, fee=fee)
                else:
                    index = state.emit("SubtensorModule", "WeightsSet", [netuid, uid])
                state.emit("Balances", "Withdraw", {"who": coldkey, "amount": fee}, extrinsic=index)
                state.emit("TransactionPayment", "TransactionFeePaid", {"who": coldkey, "actual_fee": fee, "tip": 0},
                           extrinsic=index)
            number, _ = state.commit_block()
            sizes.append(len(state.block(number).events))
        self.events_bytes = statistics.median(sizes) if sizes else 0
        self.node = CountingNode(state).start()

    def info(self) -> dict[str, Any]:
        return {"url": self.node.url, "head": self.head(), "events_bytes_per_block": self.events_bytes}


def _write_base(state: ChainState, base: str, seed: int) -> list[tuple[str, str, int, int]]:
    """The base chain, committed; returns (coldkey, hotkey, netuid, uid) of staked uids to act on."""
    if base == "mainnet":
        from simnode.scenarios import mainnet_scale

        world = mainnet_scale(state, seed=seed)
        state.commit_block()
        return [(world.coldkey[h], h, n, world.hotkeys[n].index(h)) for (h, n), s in sorted(world.stake.items())
                if n and s > 10**9 and h in world.coldkey][:2000]
    from tests import tricky_chain as t

    for pallet, item, params, value in t.storage_writes():
        state.set(item, params, value, pallet=pallet)
    state.commit_block()
    return [(t.COLD[h], h, 1, uid) for uid, h in enumerate(t.UIDS_1) if t.OWN_ALPHA_1[h] > 10**9]


# -- (a) events per refresh ------------------------------------------------------------


def _scope(base: str):
    from exporter.config import ScopeConfig, WatchedHotkey
    from tests import tricky_chain as t

    return ScopeConfig() if base == "mainnet" else ScopeConfig(min_stake_weight=0, watch=(WatchedHotkey(t.M, "M"),))


async def _connect(url: str, counter):
    from bittensor._transport.interface import SubstrateConnection

    from exporter.chain.wire import counting_connect_factory

    conn = SubstrateConnection(url, fallback_urls=[], max_retries=2, response_timeout=120,
                               connect_factory=counting_connect_factory(counter))
    await conn.initialize()
    return conn


async def _events_costs(node, url: str, head: int, sizes, repeats: int) -> dict[int, dict]:
    """Median requests, bytes and CPU of reading and decoding the events of the last N blocks."""
    from exporter.chain.events import ReaderEventSource, read_window
    from exporter.chain.reader import ChainReader
    from exporter.chain.wire import RequestCounter

    counter = RequestCounter()
    conn = await _connect(url, counter)
    try:
        source, block, _ = await ChainReader(32).open_at(conn, head)
        events = ReaderEventSource(source)
        await read_window(events, head - 2, head, 2)  # layouts; a refusing node is found out here
        rows: dict[int, dict] = {}
        for n in sizes:
            runs = []
            for _ in range(repeats):
                node.call("reset_counters")
                before = counter.total()
                cpu, wall = time.process_time(), time.perf_counter()
                window = await read_window(events, head - n, head, n)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                runs.append({**node.call("counters"), "cpu": cpu, "wall": wall, "client_requests": counter.total() - before,
                             "kept": len(window.events)})
            rows[n] = {key: statistics.median(r[key] for r in runs) for key in runs[0] if key != "by_method"}
            rows[n]["by_method"] = runs[-1]["by_method"]
        return rows
    finally:
        await conn.close()


async def _attribution(node, url: str, base: str, head: int, n: int) -> dict:
    """Reads at head - n and at head (with the window), then ``attribute`` timed alone; and the
    requests of the whole read at head with and without the events."""
    from exporter.chain.reader import ChainReader, EventRange
    from exporter.chain.wire import RequestCounter
    from exporter.config import HistoryConfig
    from exporter.snapshot.builder import build_snapshot
    from exporter.snapshot.causes import attribute
    from exporter.snapshot.changes import HistoryState, state_of

    scope, ratio = _scope(base), HistoryConfig.stake_change_ratio
    counter = RequestCounter()
    conn = await _connect(url, counter)
    try:
        reader = ChainReader(32)
        previous = build_snapshot(await reader.read(conn, scope, None, at_block=head - n), scope)
        await reader.read(conn, scope, None, at_block=head)  # the SDK's runtime lookups of this block, once
        before = counter.total()
        await reader.read(conn, scope, None, at_block=head)
        without = counter.total() - before
        before = counter.total()
        read = await reader.read(conn, scope, EventRange(head - n, n), at_block=head)
        with_events = counter.total() - before
        current = build_snapshot(read, scope)
        old, _ = state_of(previous, HistoryState.empty(), ratio)
        new, net = state_of(current, old, ratio)
        suspended = frozenset(v.hotkey for v in current.tracked if v.suspended)
        cpu = time.process_time()
        changes = attribute(old, new, net, read.events, suspended)
        cpu = time.process_time() - cpu
        return {"cpu": cpu, "changes": len(changes), "caused": sum(1 for c in changes if c.cause),
                "read_requests": without, "read_requests_with_events": with_events, "tracked": len(current.tracked)}
    finally:
        await conn.close()


def measure_refresh(base: str, extrinsics: int, sizes, repeats: int) -> dict:
    from bench.workers import Worker

    with Worker(BusyChain, base, max(sizes) + 2, extrinsics, timeout=1800) as node:
        info = node.call("info")
        result: dict[str, Any] = {"base": base, "extrinsics": extrinsics, **info}
        for mode, deny in (("range", False), ("per_block", True)):
            node.call("deny_unsafe", deny)
            result[mode] = {str(n): row for n, row in asyncio.run(
                _events_costs(node, info["url"], info["head"], sizes, repeats)).items()}
        node.call("deny_unsafe", False)
        result["attribution"] = {str(n): asyncio.run(_attribution(node, info["url"], base, info["head"], n)) for n in sizes}
    return result


# -- (b) backfill of a simulated month ---------------------------------------------------


class MonthChain(_Served):
    """The tricky chain stepped through ``days`` of blocks with ``per_day`` scripted changes a day."""

    def __init__(self, days: float, per_day: int = 10):
        from simnode.actions import (add_stake, remove_stake, schedule_children, set_childkey_take,
                                     set_min_childkey_take, swap_hotkey)
        from simnode.epoch import advance_to
        from tests import tricky_chain as t

        self.state = state = ChainState(393)
        _write_base(state, "tricky", 0)
        end = 1 + int(days * 7200)
        changes = max(1, int(days * per_day))
        spacing = (end - 1) // (changes + 1)
        moved = {t.M: 0, t.P2: 0, t.C3: 0}
        for i in range(changes):
            block = 1 + spacing * (i + 1)
            advance_to(state, block - 1)
            kind = i % 10
            if kind in (0, 4, 7):
                set_childkey_take(state, (t.M, t.C2, t.C3)[i % 3], 1, 1_000 + (i * 37) % 9_000)
            elif kind in (1, 5, 8):
                hotkey = (t.M, t.P2, t.C3)[i % 3]
                if moved[hotkey] > 0:
                    remove_stake(state, t.COLD[hotkey], hotkey, 1, moved[hotkey])
                    moved[hotkey] = 0
                else:
                    moved[hotkey] = (20 + i % 50) * t.RAO
                    add_stake(state, t.COLD[hotkey], hotkey, 1, moved[hotkey])
            elif kind in (2, 6):
                # Applied at subnet 1's first epoch after the cooldown (advance_to), with SetChildren.
                children = [(t.HALF, t.Z)] if i % 4 == 2 else [(t.MAX, t.M)]
                schedule_children(state, t.P3, 1, children, cooldown=300)
            elif kind == 3:
                set_min_childkey_take(state, (i * 7) % 500)
            else:
                set_childkey_take(state, t.V2, 2, 500 + i % 1000)
            if i == changes // 2:
                swap_hotkey(state, t.COLD[t.NP], t.NP, t.hotkey(200))  # a parent's hotkey swapped mid-month
            advance_to(state, block)
        advance_to(state, end)
        self.changes = changes + 1
        self.node = CountingNode(state).start()

    def info(self) -> dict[str, Any]:
        return {"url": self.node.url, "head": self.head(), "scripted_changes": self.changes,
                "blocks_with_events": len(self.state._events), "storage_segments": len(self.state._segments)}


_DONE = re.compile(r"done: ([\d,]+) events over ([\d,]+) blocks in \S+; ([\d,]+) requests \(([\d,]+) a day of blocks\)")


def measure_month(days: float, requests_per_second: float, chunk: int) -> dict:
    from bench.workers import Worker
    from tests import tricky_chain as t

    started = time.perf_counter()
    with Worker(MonthChain, days, timeout=1800) as node, tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp:
        info = node.call("info")
        built = time.perf_counter() - started
        config, db = Path(tmp) / "config.yaml", Path(tmp) / "history.db"
        config.write_text(f"chain:\n  genesis_hash: '{SIMNODE_GENESIS_HASH}'\n"
                          f"scope:\n  min_stake_weight: 0\n  watch:\n    - hotkey: {t.M}\n      alias: M\n")
        command = [sys.executable, "-m", "exporter", "history", "backfill", "--config.file", str(config),
                   "--history.path", str(db), "--archive.endpoint", info["url"], "--from-block", "1",
                   "--to-block", str(info["head"]), "--requests-per-second", f"{requests_per_second:g}",
                   "--chunk-blocks", str(chunk), "--log.level", "error"]
        node.call("reset_counters")
        with open(Path(tmp) / "stderr", "w+") as err:
            wall = time.perf_counter()
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err,
                                       env={**os.environ, "PYTHONUNBUFFERED": "1"})
            _, status, usage = os.wait4(process.pid, 0)
            wall = time.perf_counter() - wall
            err.seek(0)
            output = err.read()
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"the backfill failed:\n{output[-2000:]}")
        done = _DONE.search(output)
        counters = node.call("counters")
        with sqlite3.connect(db) as conn:
            causes = dict(conn.execute("SELECT coalesce(cause, '(none)'), count(*) FROM events GROUP BY 1 ORDER BY 2 DESC"))
            size = os.path.getsize(db)
    blocks = info["head"] - 1
    return {
        **info, "build_seconds": built, "blocks": blocks, "days": blocks / 7200, "events": sum(causes.values()),
        "causes": causes, "reported": done.groups() if done else None, "requests": counters["requests"],
        "by_method": counters["by_method"], "bytes_out": counters["bytes_out"], "bytes_in": counters["bytes_in"],
        "per_day": counters["requests"] / (blocks / 7200), "wall": wall, "rate": counters["requests"] / wall,
        "busiest_10s": counters["busiest_10s"], "budget": requests_per_second, "chunk": chunk,
        "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024, "db_bytes": size,
    }


# -- report ------------------------------------------------------------------------------


def _kb(n: float) -> str:
    return f"{n / 1000:,.1f} kB" if n < 10**6 else f"{n / 1e6:,.2f} MB"


def refresh_table(r: dict) -> str:
    lines = [f"base: {r['base']}, {r['extrinsics']} extrinsics a block, System.Events {r['events_bytes_per_block']:,.0f} bytes a block",
             "| blocks | call | requests | methods | bytes sent / received | read + decode CPU | events kept | attribution CPU |",
             "|---|---|---|---|---|---|---|---|"]
    for mode, call in (("range", "state_queryStorage"), ("per_block", "state_queryStorageAt a block")):
        for n, row in r[mode].items():
            a = r["attribution"][n]
            methods = ", ".join(f"{m} {c}" for m, c in sorted(row["by_method"].items()))
            lines.append(f"| {n} | {call} | {row['requests']:.0f} | {methods} | {_kb(row['bytes_in'])} / {_kb(row['bytes_out'])} | "
                         f"{row['cpu'] * 1000:,.1f} ms | {row['kept']:.0f} | {a['cpu'] * 1000:,.2f} ms ({a['changes']} changes) |")
    reads = ", ".join(f"{n} blocks: {a['read_requests']} -> {a['read_requests_with_events']}" for n, a in r["attribution"].items())
    lines.append(f"\nA whole read at the head (storage and events), requests without -> with the events: {reads}")
    return "\n".join(lines)


def month_table(m: dict) -> str:
    causes = ", ".join(f"{c} {n}" for c, n in m["causes"].items())
    rows = [
        ("blocks backfilled", f"{m['blocks']:,} ({m['days']:g} days), chunks of {m['chunk']}"),
        ("scripted changes", f"{m['scripted_changes']} (blocks with events: {m['blocks_with_events']:,})"),
        ("events recorded", f"{m['events']:,} ({causes})"),
        ("requests", f"{m['requests']:,} ({', '.join(f'{k} {v:,}' for k, v in sorted(m['by_method'].items()))})"),
        ("requests per simulated day", f"{m['per_day']:,.0f}"),
        ("bytes received / sent", f"{_kb(m['bytes_out'])} / {_kb(m['bytes_in'])}"),
        ("wall", f"{m['wall']:,.1f} s (node build {m['build_seconds']:.1f} s, not counted)"),
        ("request rate vs budget", f"{m['rate']:,.1f}/s average, busiest 10 s {m['busiest_10s'] / 10:,.1f}/s; "
                                   f"budget {m['budget']:g}/s: {'within' if m['rate'] <= m['budget'] else 'OVER'}"),
        ("backfill CPU / peak RSS", f"{m['cpu']:,.1f} s / {m['rss_mb']:,.0f} MB"),
        ("history file", _kb(m["db_bytes"])),
    ]
    return "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def run(*, base: str = "tricky", extrinsics: int = EXTRINSICS, sizes=SIZES, repeats: int = 5, days: float = 30,
        requests_per_second: float = 100, chunk: int = 300, month: bool = True, refresh: bool = True) -> dict:
    result: dict[str, Any] = {}
    if refresh:
        result["refresh"] = measure_refresh(base, extrinsics, sizes, repeats)
    if month:
        result["month"] = measure_month(days, requests_per_second, chunk)
    return result


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.history_events", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seconds: 5 and 64 blocks, one run, 0.2 days of backfill")
    parser.add_argument("--base", choices=("tricky", "mainnet"), default="tricky")
    parser.add_argument("--extrinsics", type=int, default=EXTRINSICS, help="signed extrinsics per block")
    parser.add_argument("--blocks", default=",".join(map(str, SIZES)), help="window sizes, comma-separated")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--requests-per-second", type=float, default=100)
    parser.add_argument("--chunk-blocks", type=int, default=300)
    parser.add_argument("--skip-month", action="store_true")
    parser.add_argument("--skip-refresh", action="store_true", help="only the month's backfill")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    sizes = tuple(int(n) for n in args.blocks.split(","))
    options = dict(base=args.base, extrinsics=args.extrinsics, sizes=sizes, repeats=args.repeats, days=args.days,
                   requests_per_second=args.requests_per_second, chunk=args.chunk_blocks, month=not args.skip_month,
                   refresh=not args.skip_refresh)
    if args.quick:
        options.update(sizes=(5, 64), repeats=1, days=0.2, requests_per_second=1000)
    result = run(**options)
    if "refresh" in result:
        print(refresh_table(result["refresh"]) + "\n")
    if "month" in result:
        print(month_table(result["month"]))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
