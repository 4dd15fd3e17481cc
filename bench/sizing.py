"""``python -m bench.sizing``: what one scrape costs in each scope mode at mainnet scale.

The sizing tables of BENCHMARKS.md and docs/operations.md come from this. For each mode it runs the real
exporter (history on, so the change families are there) against the
simulated mainnet-scale chain (129 subnets x 256 uids, 64 permits each,
7,000+ child edges), two refreshes with changes between them, then measures
one scrape: series, plain and gzip bytes, and whether ``promtool check
metrics`` is clean. With ``prometheus`` installed it also runs a real
Prometheus with the repository's prometheus.yml and rules scraping the
exporter, and reports its resident memory, scrape duration and the
per-validator rule group's evaluation time (median and fastest of ten
evaluations, after a few scrapes; ``--interval 30`` as prometheus.yml ships).

Watched mode watches the five hotkeys registered on the most subnets (each
on more than 110 of the 128): the "5 watched hotkeys on every subnet" case.
``--shape larger`` runs issue 15's larger chain instead, ``--edges`` sets the child
edges asked of the mainnet-scale one.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from exporter.config import ScopeConfig, WatchedHotkey
from simnode import ChainState, SimNode
from simnode.scenarios import larger, mainnet_scale
from tests.harness import ExporterUnderTest
from tests.prometheus_server import PrometheusServer, derive_config
from tests.test_new_user import free_port


def _most_registered(world, count: int) -> list[str]:
    seen = collections.Counter(h for n, hotkeys in world.hotkeys.items() if n for h in hotkeys)
    return [h for h, _ in seen.most_common(count)]


def _register_everywhere(state: ChainState, world, hotkeys: list[str]) -> None:
    """Give each of ``hotkeys`` a uid on every subnet where it has none (the last uid
    without a permit that is not one of them): "5 watched hotkeys on every subnet"."""
    for netuid, registered in world.hotkeys.items():
        if netuid == 0:
            continue
        for hotkey in hotkeys:
            if hotkey in registered:
                continue
            uid = next(u for u in reversed(range(len(registered)))
                       if not world.permits[netuid][u] and registered[u] not in hotkeys)
            state.delete("Uids", [netuid, registered[uid]])
            state.set("Keys", [netuid, uid], hotkey)
            state.set("Uids", [netuid, hotkey], uid)
            registered[uid] = hotkey
    state.commit_block()


def _change_something(state: ChainState, world) -> None:
    """A few stake moves and a take change, so the next refresh records events."""
    for (hotkey, netuid), amount in list(world.stake.items())[:50]:
        state.set("TotalHotkeyAlpha", [hotkey, netuid], int(amount * 1.5) + 1)
    state.commit_block()


def _promtool_problems(text: bytes) -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        return "promtool not installed"
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=120)
    # `check metrics` lints names and help texts; an empty output is clean.
    return (result.stdout + result.stderr).decode().strip() or "clean"


def _prometheus(target: str, workdir: Path, scrapes: int, interval: int, evaluations: int = 10) -> dict:
    binary = shutil.which("prometheus")
    if binary is None:
        return {}
    config = derive_config(target, interval=f"{interval}s")
    port = free_port()
    with PrometheusServer(binary, workdir, config, port) as prometheus:
        prometheus.wait_ready(time.monotonic() + 60)
        deadline = time.monotonic() + scrapes * interval * 4 + 60
        while time.monotonic() < deadline:
            done = prometheus.query("count_over_time(up[1h])")
            if done and max(float(s["value"][1]) for s in done) >= scrapes:
                break
            time.sleep(interval / 2)
        scrape = prometheus.query("max(scrape_duration_seconds)")
        durations = _group_durations(prometheus, interval, evaluations)
        own = _own_metrics(prometheus.url)
        _print_costliest_rules(prometheus)
        return {
            "prometheus_rss_mb": own.get("process_resident_memory_bytes", float("nan")) / 1e6,
            "scrape_seconds": float(scrape[0]["value"][1]) if scrape else float("nan"),
            # several evaluations: one is at the mercy of whatever else runs on the machine
            "validator_rules_seconds": statistics.median(durations) if durations else float("nan"),
            "validator_rules_min_seconds": min(durations, default=float("nan")),
        }


def _group_durations(prometheus: PrometheusServer, interval: int, evaluations: int) -> list[float]:
    """prometheus_rule_group_last_duration_seconds of the per-validator group, once per evaluation."""
    found: dict[float, float] = {}  # last evaluation time -> its duration
    deadline = time.monotonic() + evaluations * interval * 3 + 30
    while len(found) < evaluations and time.monotonic() < deadline:
        for group in prometheus.rule_groups():
            if group["name"] == "bittensor-validators" and group.get("lastEvaluation", "").startswith("2"):
                found[group["lastEvaluation"]] = float(group["evaluationTime"])
        time.sleep(interval / 3)
    return list(found.values())


def _print_costliest_rules(prometheus: PrometheusServer, count: int = 8) -> None:
    rules = [(float(r.get("evaluationTime", 0)), r["name"]) for g in prometheus.rule_groups()
             if g["name"] == "bittensor-validators" for r in g["rules"]]
    print("costliest rules of the last evaluation:", ", ".join(f"{n} {t * 1000:.0f} ms" for t, n in sorted(rules, reverse=True)[:count]))


def _own_metrics(url: str) -> dict[str, float]:
    """Prometheus' own metrics from its /metrics (it does not scrape itself here)."""
    import urllib.request

    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        lines = response.read().decode().splitlines()
    values = {}
    for line in lines:
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                values[name] = float(value)
            except ValueError:
                pass
    return values


def measure(mode: str, state: ChainState, world, node_url: str, workdir: Path, scrapes: int, interval: int) -> dict:
    watched = _most_registered(world, 5)
    scope = ScopeConfig(mode=mode, watch=tuple(WatchedHotkey(h, f"watched-{i}") for i, h in enumerate(watched)))
    exporter = ExporterUnderTest(node_url, scope=scope, history_path=str(workdir / "history.db"))
    try:
        assert exporter.refresh()
        _change_something(state, world)
        assert exporter.refresh()
        status, _, plain = exporter.get("/metrics")
        status_gz, headers, packed = exporter.get("/metrics", {"Accept-Encoding": "gzip"})
        assert status == status_gz == 200 and headers.get("Content-Encoding") == "gzip"
        assert gzip.decompress(packed).count(b"\n") > 0
        lines = plain.decode().splitlines()
        by_family = collections.Counter(line.split("{")[0].split(" ")[0] for line in lines if line and not line.startswith("#"))
        print(f"{mode}: series by family:", ", ".join(f"{n} {c}" for n, c in by_family.most_common(40)))
        result = {
            "mode": mode,
            "watched": len(watched),
            "watched_pairs": sum(1 for v in exporter.snapshot.validators if v.hotkey in set(watched)),
            "series": sum(1 for line in lines if line and not line.startswith("#")),
            "plain_mb": len(plain) / 1e6,
            "gzip_mb": len(packed) / 1e6,
            "promtool": _promtool_problems(plain),
        }
        if scrapes:
            result.update(_prometheus(exporter.url.removeprefix("http://"), workdir / "prometheus", scrapes, interval))
        return result
    finally:
        exporter.close()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=("mainnet", "larger"), default="mainnet",
                        help="the chain: mainnet_scale, or issue 15's larger chain (more edges, takes, pending sets)")
    parser.add_argument("--edges", type=int, default=7000)
    parser.add_argument("--scrapes", type=int, default=5, help="scrapes before Prometheus' memory is read")
    parser.add_argument("--interval", type=int, default=5, help="Prometheus scrape interval, seconds")
    parser.add_argument("--modes", default="network,watched")
    parser.add_argument("--no-prometheus", action="store_true", help="sizes only, no Prometheus run")
    parser.add_argument("--everywhere", action="store_true", help="register the watched hotkeys on every subnet first")
    args = parser.parse_args(argv)
    state = ChainState()
    world = mainnet_scale(state, edges=args.edges) if args.shape == "mainnet" else larger(state, edges=max(args.edges, 7171))
    state.commit_block()
    if args.everywhere:
        _register_everywhere(state, world, _most_registered(world, 5))
    edges = sum(len(group) for group in world.child_keys.values())
    print(f"chain: {len(world.hotkeys) - 1} subnets, {sum(len(h) for n, h in world.hotkeys.items() if n)} uids, {edges} edges")
    rows = []
    with SimNode(state) as node:
        for mode in args.modes.split(","):
            with tempfile.TemporaryDirectory() as tmp:
                (Path(tmp) / "prometheus").mkdir()
                rows.append(measure(mode, state, world, node.url, Path(tmp), 0 if args.no_prometheus else args.scrapes, args.interval))
    print("| mode | series | plain MB | gzip MB | Prometheus RSS MB | scrape s | validator rules s (median, min of 10) | promtool check metrics |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        label = r["mode"] if r["mode"] == "network" else f"watched ({r['watched']} hotkeys, {r['watched_pairs']} (hotkey, subnet))"
        print(f"| {label} | {r['series']:,} | {r['plain_mb']:.2f} | {r['gzip_mb']:.2f} | "
              f"{r.get('prometheus_rss_mb', float('nan')):.0f} | {r.get('scrape_seconds', float('nan')):.3f} | "
              f"{r.get('validator_rules_seconds', float('nan')):.3f}, {r.get('validator_rules_min_seconds', float('nan')):.3f} | {r['promtool']} |")


if __name__ == "__main__":
    main()
