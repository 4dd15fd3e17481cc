"""The benchmark harness runs end to end on a tiny chain, so it cannot rot unnoticed.

The mainnet-scale run is ``make bench`` (minutes); this is the same code on the
demo scenario with a 5 ms latency pass and a handful of scrapes.
"""

from __future__ import annotations

import os

from bench.report import notes, summarize, table
from bench.run import Options, run


def test_bench_runs_end_to_end_on_the_demo_chain():
    options = Options(
        scenario="demo", runs=1, latency_ms=5, naive_sample=0, naive_sample_latency=4, sdk_runs=1,
        scrapers=4, scrapes=2, scrape_trials=1, slow_scrapes=1, decode_repeats=1,
    )
    result = run(options)
    summary = summarize(result)
    exporter = summary["exporter"]
    assert exporter["validators"] > 0 and exporter["edges"] > 0
    assert 0 < exporter["requests_max"] <= 120
    assert 0 < exporter["in_flight"] <= options.max_in_flight
    assert exporter["cpu"] > 0 and exporter["rss_mb"] > 0
    # A refresh's CPU is its own process's during it: never more than its wall time on every CPU
    # (a counter of the node's merged into the rows once replaced it with the node's total).
    assert exporter["cpu"] <= exporter["wall_0"] * (os.cpu_count() or 1) + 0.05
    assert exporter["plain_mb"] > exporter["gzip_mb"] > 0
    # (a) reads every validator at 0 ms: five requests each, one at a time.
    assert summary["naive"]["requests"] >= 5 * exporter["validators"]
    assert summary["naive"]["in_flight"] == 1
    assert summary["paging"]["entries"] > 0 and summary["paging"]["requests"] > exporter["requests"]
    assert summary["decode_cpu"] > 0
    # (c) served exactly the exporter's snapshot series (checked inside the run).
    assert result["prometheus_client"]["series_checked"] > exporter["validators"]
    for server in (exporter["scrapes"], summary["prometheus_client"], summary["static"]):
        for encoding in ("plain", "gzip"):
            assert 0 < server[encoding]["p50"] <= server[encoding]["p99"]
    text = table(summary)
    assert "refresh wall, 5 ms" in text and "(d) static bytes" in text and "round-trip depth" in text
    assert "machine:" in notes(summary)
