"""One benchmark run: the exporter and the baselines against one simulated node.

Order: the exporter's refreshes at 0 ms and at the injected latency, its CPU
breakdown, its /metrics under load taking turns with (d), then its peak RSS;
the chain-reading baselines (a), (b) and the decode-only time; last (c).
"""

from __future__ import annotations

import gzip
import os
import statistics
import tempfile
from dataclasses import asdict, dataclass
from typing import Any

from tests.harness import parse_exposition

from bench.client_side import ClientSide
from bench.exporter_side import ExporterSide
from bench.node_side import NodeSide
from bench.scrape import fetch, load
from bench.servers import PrometheusClientServer, StaticServer
from bench.workers import Worker

CACHE_ENV = "BITTENSOR_RUNTIME_CACHE_DIR"


@dataclass(frozen=True)
class Options:
    scenario: str = "mainnet"
    seed: int = 0
    runs: int = 5  # timed exporter refreshes per latency setting (after one warm-up)
    latency_ms: float = 50.0  # the injected per-request latency of the second setting
    max_in_flight: int = 32  # chain.max_in_flight
    history: bool = False  # also record each refresh in a history database
    naive_sample: int = 400  # validators (a) reads at 0 ms; 0 reads them all
    naive_sample_latency: int = 20  # validators (a) reads at the injected latency
    sdk_runs: int = 3  # (b) runs per latency setting
    scrapers: int = 16  # concurrent scrapers
    scrapes: int = 10  # scrapes per scraper, per encoding and trial: exporter and (d)
    scrape_trials: int = 3  # loads per server and encoding, exporter and (d) taking turns
    slow_scrapes: int = 2  # the same for (c), one trial: its every scrape renders the snapshot
    decode_repeats: int = 7


def _sample(items: list, size: int) -> list:
    """``size`` items spread evenly over ``items`` (every subnet, big and small validators)."""
    if size <= 0 or size >= len(items):
        return list(items)
    step = len(items) / size
    return [items[int(i * step)] for i in range(size)]


def _refreshes(node: Worker, exporter: Worker, runs: int) -> list[dict]:
    node.call("advance")
    warm = exporter.call("refresh")  # reconnects, map sizes, a new block's runtime lookup
    if not warm["ok"]:
        raise RuntimeError("the exporter's warm-up refresh failed")
    rows = []
    for _ in range(runs):
        node.call("advance")
        node.call("reset_counters")
        row = exporter.call("refresh")
        if not row["ok"]:
            raise RuntimeError("an exporter refresh failed")
        rows.append({**row, **node.call("counters")})
    return rows


def _scrape_trials(urls: dict[str, str], options: Options, per_scraper: int, trials: int) -> dict[str, dict]:
    """Median p50 and p99 over ``trials`` loads per server and encoding, the servers taking turns."""
    for url in urls.values():
        fetch(url), fetch(url, gzip=True)  # warm up
    loads: dict[str, dict[str, list[dict]]] = {name: {"plain": [], "gzip": []} for name in urls}
    for _ in range(trials):
        for encoding in ("plain", "gzip"):
            for name, url in urls.items():
                loads[name][encoding].append(
                    load(url, gzip=encoding == "gzip", scrapers=options.scrapers, per_scraper=per_scraper)
                )
    return {
        name: {
            encoding: {
                "p50": statistics.median(t["p50"] for t in runs),
                "p99": statistics.median(t["p99"] for t in runs),
                "requests": sum(t["requests"] for t in runs),
                "trials": runs,
            }
            for encoding, runs in by_encoding.items()
        }
        for name, by_encoding in loads.items()
    }


def _check_same_samples(exporter_body: bytes, baseline_body: bytes) -> int:
    """Every series (c) serves, the exporter serves with the same value, and vice versa."""
    ours = parse_exposition(exporter_body.decode())
    theirs = parse_exposition(baseline_body.decode())
    names = {name for name, _ in theirs}
    ours = {key: value for key, value in ours.items() if key[0] in names}
    if ours != theirs:
        missing = set(theirs).symmetric_difference(ours)
        different = [k for k in set(theirs) & set(ours) if theirs[k] != ours[k]]
        raise AssertionError(f"(c) serves other samples: {len(missing)} series differ in presence, "
                             f"{len(different)} in value, e.g. {sorted(missing or different)[:2]}")
    return len(theirs)


def run(options: Options, progress=lambda message: None) -> dict[str, Any]:
    """The raw results of one run (``report.summarize`` turns them into the table's numbers)."""
    if os.environ.get(CACHE_ENV):
        return _run(options, progress)
    # The SDK caches runtime metadata under the home directory unless told otherwise;
    # the child processes inherit the variable.
    with tempfile.TemporaryDirectory(prefix="bench-runtime-cache-") as cache:
        os.environ[CACHE_ENV] = cache
        try:
            return _run(options, progress)
        finally:
            del os.environ[CACHE_ENV]


def _run(options: Options, progress) -> dict[str, Any]:
    latency = options.latency_ms / 1000
    result: dict[str, Any] = {"options": asdict(options)}
    progress(f"building the {options.scenario} scenario")
    with Worker(NodeSide, options.scenario, options.seed) as node:
        result["chain"] = node.call("info")
        url = result["chain"]["url"]

        progress("exporter refreshes")
        with Worker(ExporterSide, url, options.max_in_flight, options.history) as exporter:
            by_latency = {}
            for setting in (0.0, latency):
                node.call("set_latency", setting)
                by_latency[setting] = _refreshes(node, exporter, options.runs)
            node.call("set_latency", 0.0)
            result["exporter"] = {
                "refreshes_0": by_latency[0.0],
                "refreshes_latency": by_latency[latency],
                "breakdown": exporter.call("breakdown", options.runs),
                **exporter.call("payload_info"),
            }
            validators = exporter.call("validators")
            snapshot = exporter.call("snapshot")
            metrics_url = exporter.call("url") + "/metrics"
            plain = fetch(metrics_url, keep_body=True).body
            gzipped = fetch(metrics_url, gzip=True, keep_body=True).body
            snapshot_part = result["exporter"]["plain_bytes"]  # the rest is live self-metrics
            if gzip.decompress(gzipped)[:snapshot_part] != plain[:snapshot_part]:
                raise AssertionError("the exporter's gzip and plain responses differ")
            progress("exporter and (d) static bytes /metrics under load, taking turns")
            with Worker(StaticServer, plain, gzipped) as static:
                scrapes = _scrape_trials({"exporter": metrics_url, "static": static.call("url") + "/metrics"},
                                         options, options.scrapes, options.scrape_trials)
            result["exporter"]["scrapes"] = scrapes["exporter"]
            result["static"] = {"scrapes": scrapes["static"]}
            result["exporter"]["peak_rss"] = exporter.call("peak_rss")
            result["exporter"]["pid"] = exporter.pid

        with Worker(ClientSide, url) as client:
            progress("SDK decode-only baseline")
            result["decode"] = client.call("decode_baseline", options.decode_repeats)
            naive: dict[str, Any] = {"validators": len(validators)}
            for setting, size in ((0.0, options.naive_sample), (latency, options.naive_sample_latency)):
                progress(f"(a) naive reader at {setting * 1000:g} ms")
                node.call("set_latency", setting)
                sample = _sample(validators, size)
                node.call("reset_counters")
                row = client.call("naive", sample)
                row.update(node.call("counters"), sample=len(sample))
                naive["0" if setting == 0 else "latency"] = row
            result["naive"] = naive
            paging: dict[str, Any] = {}
            for setting in (0.0, latency):
                progress(f"(b) SDK paging at {setting * 1000:g} ms")
                node.call("set_latency", setting)
                rows = []
                for _ in range(options.sdk_runs):
                    node.call("reset_counters")
                    row = client.call("sdk_paging")
                    rows.append({**row, **node.call("counters")})
                paging["0" if setting == 0 else "latency"] = rows
            result["sdk_paging"] = paging
            node.call("set_latency", 0.0)

    progress("(c) prometheus_client under load")
    with Worker(PrometheusClientServer, snapshot) as server:
        server_url = server.call("url") + "/metrics"
        result["prometheus_client"] = {"series_checked": _check_same_samples(plain, fetch(server_url, keep_body=True).body)}
        result["prometheus_client"]["scrapes"] = _scrape_trials(
            {"prometheus_client": server_url}, options, options.slow_scrapes, 1
        )["prometheus_client"]
    return result
