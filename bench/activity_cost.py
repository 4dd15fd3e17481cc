"""``python -m bench.activity_cost [scenario]``: what the activity and earnings reads add to a refresh.

The simulated node (``mainnet`` by default: 128 subnets x 256 uids) runs in its own process;
before each read it commits a block where, as on mainnet between two refreshes, a twentieth of
the uids of every subnet set weights (``LastUpdate`` moves on every subnet) and two subnets run
their epoch (``Active``, ``ValidatorTrust``, ``Dividends``, ``Emission``, ``StakeWeight`` and
the per-subnet dividends move), besides the stake moves of ``bench.node_side``. After two
warm-up refreshes, five are measured: the requests and the exporter's CPU of the activity read
alone (``read_activity`` at the refresh's block, on the same reader's key and value caches),
and the CPU the activity part adds to building the snapshot and rendering the exposition.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
from dataclasses import replace

from bittensor._transport.interface import SubstrateConnection

from bench.node_side import NodeSide
from bench.workers import Worker
from exporter.chain.activity import read_activity
from exporter.chain.reader import ChainReader
from exporter.config import COLLECTORS, OFF_BY_DEFAULT, ScopeConfig
from exporter.serving.exposition import render_snapshot
from exporter.snapshot.builder import build_snapshot

WEIGHT_SETTERS = 1 / 20  # of the uids of every subnet, per refresh
EPOCHS_PER_REFRESH = 2


class ActivityNodeSide(NodeSide):
    def advance(self) -> int:
        from simnode.activity import run_epoch_outputs, set_weights_of
        from simnode.epoch import _Storage

        st = _Storage(self.state)
        subnets = sorted(n for n in self.world.hotkeys if n)
        for netuid in subnets:
            size = len(self.world.hotkeys[netuid])
            set_weights_of(self.state, netuid, self._rng.sample(range(size), max(1, int(size * WEIGHT_SETTERS))))
        block = self.state.head.number + 1
        for netuid in self._rng.sample(subnets, EPOCHS_PER_REFRESH):
            run_epoch_outputs(st, netuid, block, list(st.one("ValidatorPermit", [netuid]) or []))
        return super().advance()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    scenario = args[0] if args else "mainnet"
    gc.set_threshold(50_000, 20, 10)  # as exporter.cli.prepare_process
    with Worker(ActivityNodeSide, scenario, 0) as node:
        rows = asyncio.run(_refreshes(node, node.call("info")["url"]))
    print(f"{scenario}: the activity part of five steady refreshes (median; min-max)")
    for name, values in zip(("requests", "read CPU ms", "build CPU ms", "render CPU ms", "series"), zip(*rows)):
        print(f"{name}: {statistics.median(values):g} ({min(values):g}-{max(values):g})")
    return 0


async def _refreshes(node: Worker, url: str) -> list[tuple]:
    scope = ScopeConfig()
    default = frozenset(COLLECTORS) - OFF_BY_DEFAULT
    conn = SubstrateConnection(url, fallback_urls=[], max_retries=1, response_timeout=60)
    await conn.initialize()
    try:
        reader = ChainReader(max_in_flight=32)
        rows = []
        for number in range(7):
            node.call("advance")
            read = await reader.read(conn, scope)
            # The activity read again at the same block, alone, on the reader's caches.
            source, _, _ = await reader.open_at(conn, read.block)
            node.call("reset_counters")
            started = time.process_time()
            await read_activity(source, replace(read, activity=None), scope)
            read_cpu = time.process_time() - started
            requests = node.call("counters")["requests"]
            without = replace(read, activity=None)
            started = time.process_time()
            snapshot = build_snapshot(read, scope)
            with_cpu = time.process_time() - started
            started = time.process_time()
            plain = build_snapshot(without, scope)
            build_cpu = with_cpu - (time.process_time() - started)
            started = time.process_time()
            text = render_snapshot(snapshot, collectors=default)
            with_cpu = time.process_time() - started
            started = time.process_time()
            render_snapshot(plain, collectors=default)
            render_cpu = with_cpu - (time.process_time() - started)
            series = sum(1 for line in text.splitlines() if line and not line.startswith(b"#")) - sum(
                1 for line in render_snapshot(plain, collectors=default).splitlines() if line and not line.startswith(b"#"))
            if number >= 2:
                rows.append((requests, round(read_cpu * 1000), round(build_cpu * 1000), round(render_cpu * 1000), series))
        return rows
    finally:
        await conn.close()


if __name__ == "__main__":
    raise SystemExit(main())
