"""``python -m bench.after_pending_cost``: what projecting the epoch after next adds to a snapshot.

One mainnet-scale read (``simnode.scenarios.mainnet_scale``, the real reader over the
codec, in process), then ``build_snapshot`` ``--runs`` times, measuring the process CPU
spent in the builder's after-pending step (every subnet's due sets applied, the stake
weights they touch recomputed, the permit rule run again) and in the whole snapshot;
medians. Once with the scenario's 36 pending sets, once with ``--pending`` of them
(cooldowns spread over a day: about one in twenty is due before the next epoch). Timing
the step itself, rather than snapshots with and without it, keeps a shared machine's load
out of the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import exporter.snapshot.builder as builder
from exporter.chain.reader import ChainReader
from exporter.config import ScopeConfig
from simnode import ChainState
from simnode.scenarios import mainnet_scale
from tests.test_storage_reader import FakeConnection


def measure(pending: int, runs: int) -> str:
    state = ChainState()
    mainnet_scale(state, pending=pending)
    read = asyncio.run(ChainReader(max_in_flight=8).read(FakeConnection(state), ScopeConfig()))
    project, inside, whole = builder._project_after_pending, [], []

    def timed(*args):
        started = time.process_time()
        try:
            return project(*args)
        finally:
            inside[-1] += time.process_time() - started

    builder._project_after_pending = timed
    try:
        for _ in range(runs):
            inside.append(0.0)
            started = time.process_time()
            after = builder.build_snapshot(read, ScopeConfig()).after_pending
            whole.append(time.process_time() - started)
    finally:
        builder._project_after_pending = project
    return (f"{pending} pending sets: {len(after)} subnets with sets due, {sum(a.applied for a in after.values())} applied, "
            f"{sum(len(a.changes) for a in after.values())} permits moved; the after-pending projection "
            f"{statistics.median(inside) * 1000:.1f} ms of a {statistics.median(whole) * 1000:.0f} ms snapshot (process CPU)")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.after_pending_cost", description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--pending", type=int, default=800)
    args = parser.parse_args()
    for pending in (36, args.pending):
        print(measure(pending, args.runs), flush=True)


if __name__ == "__main__":
    main()
