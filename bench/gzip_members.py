"""``python -m bench.gzip_members``: the served gzip body and a steady refresh's compression CPU, by zlib level.

The evidence behind ``exporter.serving.publication.GZIP_LEVEL`` as the body is built now:
one gzip member per family and ``SUBNETS_PER_MEMBER`` subnets, and a refresh compresses
only the members whose chunks changed. For each chain shape it runs the real exporter
(history on, network mode) against the simulated chain, refreshes twice with about a third
of the subnets' numbers moved in between (``_move``), and then, for every level, compresses
all of the second refresh's members (the body's size) and, timed, only those that differ from
the first refresh's (what a steady refresh pays; median process CPU of ``--repeats``).

Shapes: ``mainnet`` (``simnode.scenarios.mainnet_scale`` with ``--edges`` child edges, as
``bench.sizing``) and ``edges`` (the same with ``--more-edges``: a chain with twice the
childkey relationships, whose exposition is larger per validator).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
import zlib
from itertools import groupby
from pathlib import Path

from exporter.logs import configure_logging
from exporter.serving import publication
from exporter.serving.exposition import render_chunks
from simnode import ChainState, SimNode
from simnode.scenarios import mainnet_scale
from tests.harness import ExporterUnderTest

from bench.run import CACHE_ENV

LEVELS = (1, 4, 6, 9)
SUBNETS_PER_MEMBER = (8, 16, 32, 256)  # 256: one member per family
SHIPPED_SUBNETS_PER_MEMBER = publication.SUBNETS_PER_MEMBER


def _move(state: ChainState, world, seed: int) -> None:
    """Stake moves on about a third of the subnets (what a mainnet minute does), one block."""
    rng = random.Random(seed)
    netuids = sorted(n for n in world.hotkeys if n)
    moved = set(rng.sample(netuids, len(netuids) // 3))
    for (hotkey, netuid), amount in sorted(world.stake.items()):
        if netuid in moved and rng.random() < 0.3:
            state.set("TotalHotkeyAlpha", [hotkey, netuid], int(amount * rng.uniform(0.9, 1.1)) + 1)
    state.commit_block()


def _members(rendering) -> dict[tuple, bytes]:
    """The body's members as ``publication.render`` groups them: key -> text."""
    members, seen = {}, {}
    for group, chunks in groupby(zip(rendering.keys, rendering.texts), lambda chunk: publication._member_group(chunk[0])):
        key = (*group, seen.setdefault(group, 0))
        seen[group] += 1
        members[key] = b"".join(text for _, text in chunks)
    return members


def measure(edges: int, workdir: Path, repeats: int, levels=LEVELS, per_members=SUBNETS_PER_MEMBER) -> dict:
    """Two refreshes of the exporter, then every (subnets a member, level): the body's size and
    the CPU of compressing the members the second refresh changed."""
    state = ChainState()
    world = mainnet_scale(state, edges=edges)
    state.commit_block()
    with SimNode(state) as node:
        exporter = ExporterUnderTest(node.url, history_path=str(workdir / "history.db"))
        try:
            assert exporter.refresh()
            first = render_chunks(exporter.snapshot)
            _move(state, world, seed=1)
            assert exporter.refresh()
            second = render_chunks(exporter.snapshot, previous=first)
            series = sum(text.count(b"\n") - text.count(b"# ") for text in second.texts)
        finally:
            exporter.close()
    rows, members = {}, {}
    for per_member in per_members:
        publication.SUBNETS_PER_MEMBER = per_member
        before, after = _members(first), _members(second)
        changed = [text for key, text in after.items() if before.get(key) != text]
        members[per_member] = (len(after), len(changed), sum(map(len, changed)))
        for level in levels:
            size = sum(len(_compress(text, level)) for text in after.values())
            samples = []
            for _ in range(repeats):
                started = time.process_time()
                for text in changed:
                    _compress(text, level)
                samples.append(time.process_time() - started)
            rows[(per_member, level)] = (size, statistics.median(samples))
    publication.SUBNETS_PER_MEMBER = SHIPPED_SUBNETS_PER_MEMBER
    return {"edges": edges, "series": series, "plain": sum(map(len, second.texts)), "members": members, "rows": rows}


def _compress(text: bytes, level: int) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    return compressor.compress(text) + compressor.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gzip_members", description=__doc__.splitlines()[0])
    parser.add_argument("--edges", type=int, default=7000)
    parser.add_argument("--more-edges", type=int, default=15000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)))
    parser.add_argument("--subnets-per-member", default=",".join(map(str, SUBNETS_PER_MEMBER)))
    args = parser.parse_args(argv)
    configure_logging("warning", "console")
    with tempfile.TemporaryDirectory(prefix="bench-gzip-") as tmp:
        os.environ.setdefault(CACHE_ENV, tmp)
        for name, edges in (("mainnet", args.edges), ("edges", args.more_edges)):
            workdir = Path(tmp) / name
            workdir.mkdir()
            r = measure(edges, workdir, args.repeats, [int(x) for x in args.levels.split(",")],
                        [int(x) for x in args.subnets_per_member.split(",")])
            print(f"\n{name}: {r['edges']} edges asked, {r['series']:,} series, {r['plain'] / 1e6:.2f} MB plain; "
                  + "; ".join(f"{k} subnets a member: {m} members, {c} changed in a steady refresh ({b / 1e6:.2f} MB)"
                              for k, (m, c, b) in r["members"].items()))
            print("subnets a member | level | body gzip MB | steady compression CPU ms")
            for (per_member, level), (size, cpu) in r["rows"].items():
                mark = "  <- shipped" if (level, per_member) == (publication.GZIP_LEVEL, SHIPPED_SUBNETS_PER_MEMBER) else ""
                print(f"{per_member:16} | {level:5} | {size / 1e6:12.3f} | {cpu * 1000:8.1f}{mark}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
