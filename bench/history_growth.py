"""Measure how fast the history database grows at mainnet scale.

Simulates a day (or --hours) of 60 s refreshes of the mainnet-scale chain
(simnode.scenarios.mainnet_scale: ~8,000 validators in scope, 3,000
edges) with every stake drifting a little each refresh, a few takes and edges
changing, and writes them through the real history code into a real SQLite
file. Prints the file size after each simulated hour and bytes per day.

    python -m bench.history_growth [--hours 24] [--watched 5] [--sample-all]
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import tempfile
import time
from dataclasses import replace


from exporter.config import HistoryConfig, ScopeConfig, WatchedHotkey
from exporter.history.store import Retention
from exporter.history.writer import HistoryWriter
from exporter.snapshot.model import ChainRead
from exporter.snapshot.builder import build_snapshot
from simnode import ChainState
from simnode.scenarios import mainnet_scale


def read_of(world) -> ChainRead:
    """The ChainRead a refresh would produce for this world (no network needed)."""
    return ChainRead(
        block=1, block_hash="0x0", timestamp_ms=1_767_225_600_000, spec_version=393,
        tao_weight=int(0.18 * (2**64 - 1)), stake_threshold=1000 * 10**9, min_take=0, max_take=11796,
        pending_cooldown=7200, netuids=tuple(sorted(world.hotkeys)),
        permits={n: tuple(p) for n, p in world.permits.items()},
        max_validators={n: sum(p) for n, p in world.permits.items()},
        hotkeys={(n, uid): h for n, hks in world.hotkeys.items() for uid, h in enumerate(hks)},
        watched_uids={}, children={k: tuple(map(tuple, v)) for k, v in world.child_keys.items()},
        parents={k: tuple(map(tuple, v)) for k, v in world.parent_keys.items()},
        pending={k: (tuple(map(tuple, v[0])), v[1]) for k, v in world.pending.items()},
        stake=dict(world.stake), takes=dict(world.takes), coldkeys=dict(world.coldkey),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24)
    parser.add_argument("--watched", type=int, default=5)
    parser.add_argument("--sample-all", action="store_true", help="samples of every validator (samples_scope: all)")
    args = parser.parse_args()
    world = mainnet_scale(ChainState())
    base = read_of(world)
    rng = random.Random(1)
    watch = tuple(WatchedHotkey(h, f"v{i}") for i, h in enumerate(world.big_validators[: args.watched]))
    scope = ScopeConfig(watch=watch)
    directory = tempfile.mkdtemp()
    path = os.path.join(directory, "history.db")
    writer = HistoryWriter(path, Retention(sample_all=args.sample_all), stake_change_ratio=HistoryConfig.stake_change_ratio,
                           watched=scope.watched_hotkeys)
    stake, takes = dict(base.stake), dict(base.takes)
    refreshes = int(args.hours * 60)
    started, write_seconds, sizes = time.time(), 0.0, []
    for i in range(refreshes):
        # emissions: every stake grows a little each block; a few operators move stake or change takes
        for key in stake:
            stake[key] = int(stake[key] * (1 + rng.uniform(0, 0.0002)))
        for key in rng.sample(sorted(stake), 5):
            stake[key] = int(stake[key] * rng.uniform(0.5, 1.5))
        if rng.random() < 0.05:
            key = rng.choice(sorted(takes))
            takes[key] = rng.randint(0, 11796)
        read = replace(base, block=1 + i * 5, timestamp_ms=base.timestamp_ms + i * 60_000, stake=stake, takes=takes)
        snapshot = build_snapshot(read, scope)
        t0 = time.perf_counter()
        assert writer.record(snapshot).ok
        write_seconds += time.perf_counter() - t0
        if (i + 1) % 60 == 0:
            sizes.append(database_bytes(path))
            print(f"hour {(i + 1) // 60:>3}: {sizes[-1] / 1e6:8.2f} MB  validators={len(snapshot.validators)}", flush=True)
    writer.close()
    series = len({(v.hotkey, v.netuid) for v in snapshot.validators if args.sample_all or v.hotkey in scope.watched_hotkeys})
    later = (sizes[-1] - sizes[0]) / max(1, len(sizes) - 1) * 24 if len(sizes) > 1 else float("nan")
    print(f"refreshes={refreshes} validators={len(snapshot.validators)} sampled series={series} "
          f"after 1 h: {sizes[0] / 1e6:.2f} MB, after {len(sizes)} h: {sizes[-1] / 1e6:.2f} MB, "
          f"growth ~{later / 1e6:.1f} MB/day (hours 1-{len(sizes)}), "
          f"mean write {write_seconds / refreshes * 1000:.0f} ms/refresh, wall {time.time() - started:.0f} s")


def database_bytes(path: str) -> int:
    """Logical size of the database as of its last commit (WAL included), free pages excluded."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        pages, free, size = (conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "freelist_count", "page_size"))
    return (pages - free) * size


if __name__ == "__main__":
    main()
