"""``python -m bench.gzip_levels``: CPU and size of each gzip level on the rendered exposition.

Over the whole exposition as one stream (``bench.gzip_members`` measures the body as it is
served, member by member, and what a steady refresh compresses): one refresh of the
scenario in-process, then every zlib level (default memLevel) over the same
bytes, median process CPU of several compressions each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import zlib

from exporter.serving.exposition import render_snapshot
from exporter.logs import configure_logging
from exporter.serving.publication import GZIP_LEVEL
from tests.harness import ExporterUnderTest
from simnode import ChainState, SimNode
from simnode.scenarios import SCENARIOS

from bench.run import CACHE_ENV


def rendered(scenario: str, seed: int) -> bytes:
    state = ChainState()
    SCENARIOS[scenario](state, seed=seed)
    with SimNode(state) as node:
        exporter = ExporterUnderTest(node.url)
        try:
            if not exporter.refresh():
                raise RuntimeError("refresh failed")
            return render_snapshot(exporter.snapshot)
        finally:
            exporter.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gzip_levels", description=__doc__)
    parser.add_argument("--scenario", default="mainnet", choices=sorted(set(SCENARIOS) - {"empty"}))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    configure_logging("warning", "console")
    if os.environ.get(CACHE_ENV):
        plain = rendered(args.scenario, args.seed)
    else:  # keep the SDK's metadata cache out of the home directory
        with tempfile.TemporaryDirectory(prefix="bench-runtime-cache-") as cache:
            os.environ[CACHE_ENV] = cache
            plain = rendered(args.scenario, args.seed)
    print(f"exposition: {len(plain) / 1e6:.2f} MB; median CPU of {args.repeats} compressions per level")
    print("level | CPU ms | gzip MB | bytes vs level 6")
    sizes, cpus = {}, {}
    for level in range(1, 10):
        samples = []
        for _ in range(args.repeats):
            started = time.process_time()
            compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
            out = compressor.compress(plain) + compressor.flush()
            samples.append(time.process_time() - started)
        sizes[level], cpus[level] = len(out), statistics.median(samples)
    for level in range(1, 10):
        mark = "  <- exporter.serving.publication.GZIP_LEVEL" if level == GZIP_LEVEL else ""
        print(f"{level:5} | {cpus[level] * 1000:6.1f} | {sizes[level] / 1e6:7.3f} | {sizes[level] / sizes[6] - 1:+7.1%}{mark}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
