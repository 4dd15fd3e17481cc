"""``python -m bench.stages``: CPU of each refresh stage on a steady mainnet-scale refresh.

The simulated node (``bench.node_side``: the ``mainnet`` scenario by default, ``larger``
for issue 15's larger chain, which ``make bench`` measures with ``run_separately``) runs
in its own process and commits a new block with moved stakes before every
refresh, as on mainnet between two refreshes. The exporter is the production
wiring (``tests.harness.ExporterUnderTest``, history on unless ``--no-history``,
the process switches of ``exporter.cli.prepare_process``) in this process, its
refresh thread running ``refresh_once()`` on demand.

CPU is ``time.process_time()`` (every thread of this process, the chain-I/O
loop included, nothing of the node's): around each stage, by giving the
refresher a stage timer that reads it as well as the wall clock, and around the
whole refresh. After ``--warmup`` refreshes (the first renders everything; later
ones are steady) it prints the median of ``--runs`` refreshes per stage.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import exporter.refresh as refresh_module
from bench.client_side import ClientSide
from bench.node_side import NodeSide
from bench.workers import Worker


class _CpuStages(refresh_module._Stages):
    """The refresher's stage timer, also reading process CPU per stage (kept in ``log``)."""

    log: list[tuple[str, float]] = []

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.process_time()
        try:
            with super().stage(name):
                yield
        finally:
            _CpuStages.log.append((name, time.process_time() - started))


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f}"


def measure(scenario: str, seed: int, runs: int, warmup: int, latency_ms: float, history: bool) -> dict:
    from exporter.cli import prepare_process
    from exporter.config import Config, HistoryConfig
    from tests.harness import ExporterUnderTest

    tmp = tempfile.mkdtemp(prefix="bench-stages-")
    # As at start-up: GC thresholds, logging, the SDK's runtime cache (beside the history, in tmp).
    prepare_process(Config(log_level="warning", log_format="console", history=HistoryConfig(path=os.path.join(tmp, "history.db"))))
    refresh_module._Stages = _CpuStages  # type: ignore[misc] - the refresher builds one per refresh
    try:
        with Worker(NodeSide, scenario, seed) as node:
            node.call("set_latency", latency_ms / 1000)
            chain = node.call("info")
            url = chain.pop("url")
            exporter = ExporterUnderTest(url, history_path=os.path.join(tmp, "history.db") if history else None,
                                         chain_timeout=60, refresh_timeout_seconds=600)
            rows = []
            try:
                for i in range(warmup + runs):
                    node.call("advance")
                    node.call("reset_counters")
                    node_cpu = node.call("cpu")
                    _CpuStages.log = []
                    wall, cpu = time.perf_counter(), time.process_time()
                    publication = exporter.refresher.refresh_now(timeout=600)
                    row = {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}
                    if not publication.up:
                        raise RuntimeError("a refresh failed")
                    row.update({f"cpu.{name}": seconds for name, seconds in _CpuStages.log})
                    # The simulated node answers in one Python thread on the same CPUs: part of the wall time.
                    row["node_cpu"] = node.call("cpu") - node_cpu
                    row["requests"] = node.call("counters")["requests"]
                    row["plain_bytes"] = len(publication.data.plain)
                    row["gzip_bytes"] = sum(map(len, publication.body(time.time(), b"", gzip=True)))
                    if i >= warmup:
                        rows.append(row)
                # What refresh mode "finalized" pays between blocks: one ask for the finalized head.
                asks = 20
                node.call("reset_counters")
                cpu = time.process_time()
                for _ in range(asks):
                    exporter.session.finalized_head(10)
                head_ask = {"cpu": (time.process_time() - cpu) / asks, "requests": node.call("counters")["requests"] / asks}
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux; before the baseline's reader
                # The floor the CPU is judged against: the SDK's decoders alone on every value one read fetches.
                node.call("set_latency", 0)
                client = ClientSide(url)
                try:
                    decode = client.decode_baseline(5)
                finally:
                    client.close()
            finally:
                exporter.close()
    finally:
        refresh_module._Stages = _CpuStages.__mro__[1]  # type: ignore[misc]
        shutil.rmtree(tmp, ignore_errors=True)
    keys = [k for k in rows[0] if all(k in r for r in rows)]
    options = {"scenario": scenario, "seed": seed, "runs": runs, "warmup": warmup, "latency_ms": latency_ms,
               "history": history}
    return {"options": options, "chain": chain, "runs": rows,
            "median": {k: statistics.median(r[k] for r in rows) for k in keys}, "head_ask": head_ask,
            "peak_rss_mib": peak, "decode_only": decode}


def run_separately(scenario: str = "larger", *, seed: int = 0, runs: int = 5, warmup: int = 2,
                   latency_ms: float = 50.0, history: bool = True, timeout: float = 3600.0) -> dict:
    """``python -m bench.stages`` in a process of its own, as an operator runs it: ``measure``
    sets that process's GC thresholds and logging, and its peak RSS is the exporter's alone.

    Returns ``measure``'s result (its ``--json``) with ``output``, what it printed, and
    ``elapsed``, its wall time in seconds (start-up and the chain's build included).
    """
    repo = Path(__file__).resolve().parent.parent  # bench.stages imports tests.harness
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as tmp:
        path = os.path.join(tmp, "stages.json")
        command = [sys.executable, "-m", "bench.stages", "--scenario", scenario, "--seed", str(seed),
                   "--runs", str(runs), "--warmup", str(warmup), "--latency-ms", f"{latency_ms:g}",
                   "--history" if history else "--no-history", "--json", path]
        started = time.monotonic()
        done = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=timeout)
        elapsed = time.monotonic() - started
        if done.returncode != 0:
            raise RuntimeError(f"python -m bench.stages exited with {done.returncode}: {done.stderr[-4000:]}")
        with open(path) as result_file:
            result = json.load(result_file)
    return {**result, "output": done.stdout, "elapsed": elapsed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stages", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="mainnet")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=int, default=7, help="steady refreshes timed (default 7)")
    parser.add_argument("--warmup", type=int, default=2, help="refreshes before those (default 2)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="slept by the node per request")
    parser.add_argument("--history", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--json", metavar="PATH", help="also write every refresh's numbers as JSON")
    args = parser.parse_args(argv)
    result = measure(args.scenario, args.seed, args.runs, args.warmup, args.latency_ms, args.history)
    median = result["median"]
    chain = result["chain"]
    print(f"{args.scenario}, {args.latency_ms:g} ms, history {'on' if args.history else 'off'}: "
          f"median of {args.runs} steady refreshes after {args.warmup}")
    print(f"chain: {chain['entries']:,} storage entries, {chain['edges']:,} child edges, "
          f"{chain['permit_holders']:,} permit holders on subnets other than root; "
          f"built in {chain['build_seconds']:.1f} s")
    print("stage          CPU ms")
    for key, value in median.items():
        if key.startswith("cpu."):
            print(f"{key[4:]:<12} {_ms(value)}")
    print(f"{'refresh':<12} {_ms(median['cpu'])}  (wall {_ms(median['wall']).strip()} ms)")
    print(f"the simulated node's CPU answering a refresh: {_ms(median['node_cpu']).strip()} ms")
    print(f"requests {median['requests']:g}, exposition plain {median['plain_bytes'] / 1e6:.2f} MB, "
          f"gzip {median['gzip_bytes'] / 1e6:.2f} MB")
    print(f"peak RSS of the exporter's process {result['peak_rss_mib']:.0f} MiB (Linux)")
    decode = result["decode_only"]
    print(f"SDK decode-only of one read ({decode['values']:,} values): {decode['cpu'] * 1000:.1f} ms; "
          f"refresh CPU = {median['cpu'] / decode['cpu']:.1f} x it")
    ask = result["head_ask"]
    print(f"finalized-head ask (refresh mode finalized, between blocks): {ask['cpu'] * 1000:.2f} ms CPU, "
          f"{ask['requests']:g} request")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
