"""The scrape path alone: the exporter's /metrics against a static server with the same bytes, at mainnet scale.

``python -m bench.scrape_path [--trials 5] [--scrapers 16]``: the mainnet-scale
node and the exporter each in their own process (as ``make bench`` runs them),
one refresh, then the static baseline (d) serving the exporter's own bytes;
both take turns under the same load. Prints p50/p99 per encoding and the
ratio to static. The part of ``make bench`` that takes seconds, not minutes.
"""

from __future__ import annotations

import argparse
import os
import tempfile

from bench.exporter_side import ExporterSide
from bench.node_side import NodeSide
from bench.run import CACHE_ENV, Options, _scrape_trials
from bench.scrape import fetch
from bench.servers import StaticServer
from bench.workers import Worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--scrapers", type=int, default=16)
    parser.add_argument("--per-scraper", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-runtime-cache-") as cache:
        os.environ.setdefault(CACHE_ENV, cache)
        with Worker(NodeSide, "mainnet", 0) as node:
            url = node.call("info")["url"]
            with Worker(ExporterSide, url, 32, False) as exporter:
                node.call("advance")
                assert exporter.call("refresh")["ok"], "the exporter's refresh failed"
                metrics = exporter.call("url") + "/metrics"
                plain = fetch(metrics, keep_body=True).body
                packed = fetch(metrics, gzip=True, keep_body=True).body
                with Worker(StaticServer, plain, packed) as static:
                    result = _scrape_trials({"exporter": metrics, "static": static.call("url") + "/metrics"},
                                            Options(scrapers=args.scrapers), args.per_scraper, args.trials)
    print(f"{len(plain) / 1e6:.2f} MB plain, {len(packed) / 1e6:.2f} MB gzip; {args.scrapers} scrapers x "
          f"{args.per_scraper}, median of {args.trials} trials")
    for encoding in ("plain", "gzip"):
        ours, static_ = result["exporter"][encoding], result["static"][encoding]
        print(f"{encoding:5}: exporter p50 {ours['p50'] * 1e3:6.1f} ms, p99 {ours['p99'] * 1e3:6.1f} ms | "
              f"static p50 {static_['p50'] * 1e3:6.1f} ms, p99 {static_['p99'] * 1e3:6.1f} ms | "
              f"p99 {ours['p99'] / static_['p99']:.2f}x static")


if __name__ == "__main__":
    main()
