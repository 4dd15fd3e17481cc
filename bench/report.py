"""Turn one run's raw results into the numbers and the one table ``python -m bench`` prints."""

from __future__ import annotations

import os
import platform
import statistics
from typing import Any, Optional

MB = 1e6
# Targets of issue #6 (mainnet scale).
MAX_REQUESTS = 120
MAX_DEPTH = 12
MIN_SPEEDUP_VS_PAGING = 20
MAX_RSS_MB = 300
MAX_P99_VS_STATIC = 1.5
MIN_P99_SPEEDUP_VS_PROMETHEUS_CLIENT = 10
MAX_CPU_VS_DECODE = 2


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, {platform.system()} {platform.release()}"


def _med(rows: list[dict], key: str) -> float:
    return statistics.median(row[key] for row in rows)


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    latency = result["options"]["latency_ms"] / 1000
    e = result["exporter"]
    rows0, rowsL = e["refreshes_0"], e["refreshes_latency"]
    everything = rows0 + rowsL
    exporter = {
        "wall_0": _med(rows0, "wall"),
        "wall_latency": _med(rowsL, "wall"),
        "requests": _med(everything, "requests"),
        "requests_max": max(row["requests"] for row in everything),
        "in_flight": max(row["max_in_flight"] for row in everything),
        "cpu": _med(rows0, "cpu"),
        "breakdown": e["breakdown"],
        "rss_mb": e["peak_rss"]["ru_maxrss_mib"] * 1024 * 1024 / MB,
        "plain_mb": e["plain_bytes"] / MB,
        "gzip_mb": e["gzip_bytes"] / MB,
        "validators": e["validators"],
        "edges": e["edges"],
        "scrapes": e["scrapes"],
    }
    exporter["depth"] = (exporter["wall_latency"] - exporter["wall_0"]) / latency if latency else None

    n = result["naive"]["validators"]
    a0, aL = result["naive"]["0"], result["naive"]["latency"]
    naive = {
        "wall_0": a0["wall"] * n / a0["sample"],
        "wall_latency": aL["wall"] * n / aL["sample"],
        "requests": round(a0["requests"] * n / a0["sample"]),
        "in_flight": max(a0["max_in_flight"], aL["max_in_flight"]),
        "cpu": a0["cpu"] * n / a0["sample"],
        "sample_0": a0["sample"],
        "sample_latency": aL["sample"],
        "validators": n,
    }
    naive["depth"] = (naive["wall_latency"] - naive["wall_0"]) / latency if latency else None

    b0, bL = result["sdk_paging"]["0"], result["sdk_paging"]["latency"]
    paging = {
        "wall_0": _med(b0, "wall"),
        "wall_latency": _med(bL, "wall"),
        "requests": _med(b0 + bL, "requests"),
        "in_flight": max(row["max_in_flight"] for row in b0 + bL),
        "cpu": _med(b0, "cpu"),
        "entries": b0[0]["result"],
        "runs": len(b0),
    }
    paging["depth"] = (paging["wall_latency"] - paging["wall_0"]) / latency if latency else None
    return {
        "latency_ms": result["options"]["latency_ms"],
        "scrapers": result["options"]["scrapers"],
        "runs": result["options"]["runs"],
        "max_in_flight_limit": result["options"]["max_in_flight"],
        "chain": result["chain"],
        "exporter": exporter,
        "naive": naive,
        "paging": paging,
        "decode_cpu": result["decode"]["cpu"],
        "prometheus_client": result["prometheus_client"]["scrapes"],
        "static": result["static"]["scrapes"],
    }


def _s(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    if seconds >= 100:
        return f"{seconds:,.0f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.3g} ms" if seconds < 0.1 else f"{seconds:.3f} s"


def _n(value: Optional[float]) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _x(ratio: float) -> str:
    return f"{ratio:,.0f}x" if ratio >= 100 else f"{ratio:.3g}x"


def targets(s: dict[str, Any]) -> dict[str, bool]:
    e, b = s["exporter"], s["paging"]
    ok = {
        "requests": e["requests_max"] <= MAX_REQUESTS,
        "in_flight": e["in_flight"] <= s["max_in_flight_limit"],
        "wall_latency": e["wall_latency"] * MIN_SPEEDUP_VS_PAGING <= b["wall_latency"],
        "rss": e["rss_mb"] <= MAX_RSS_MB,
        "cpu": e["cpu"] <= MAX_CPU_VS_DECODE * s["decode_cpu"],
    }
    if e["depth"] is not None:
        ok["depth"] = e["depth"] <= MAX_DEPTH
    for encoding in ("plain", "gzip"):
        p99 = e["scrapes"][encoding]["p99"]
        ok[f"p99_{encoding}"] = (
            p99 <= MAX_P99_VS_STATIC * s["static"][encoding]["p99"]
            and p99 * MIN_P99_SPEEDUP_VS_PROMETHEUS_CLIENT <= s["prometheus_client"][encoding]["p99"]
        )
    return ok


def table(s: dict[str, Any]) -> str:
    e, a, b = s["exporter"], s["naive"], s["paging"]
    c, d = s["prometheus_client"], s["static"]
    ok = targets(s)
    lat = f"{s['latency_ms']:g} ms"

    def vs(base: Optional[float], ours: Optional[float], fmt=_s) -> str:
        """A baseline's value and how many times the exporter's it is."""
        if base is None:
            return "-"
        return fmt(base) + (f" ({_x(base / ours)})" if ours else "")

    def floor(base: float, ours: float) -> str:
        return f"{_s(base)} (exp {_x(ours / base)})"

    def mark(key: str) -> str:
        return "-" if key not in ok else ("yes" if ok[key] else "NO")

    bd = e["breakdown"]
    rows = [
        ("refresh wall, 0 ms", _s(e["wall_0"]), "", "", vs(a["wall_0"], e["wall_0"]), vs(b["wall_0"], e["wall_0"]), "", ""),
        (f"refresh wall, {lat}", _s(e["wall_latency"]), f"<= (b)/{MIN_SPEEDUP_VS_PAGING} = {_s(b['wall_latency'] / MIN_SPEEDUP_VS_PAGING)}",
         mark("wall_latency"), vs(a["wall_latency"], e["wall_latency"]), vs(b["wall_latency"], e["wall_latency"]), "", ""),
        ("JSON-RPC requests / refresh", _n(e["requests"]), f"<= {MAX_REQUESTS}", mark("requests"),
         vs(a["requests"], e["requests"], _n), vs(b["requests"], e["requests"], _n), "", ""),
        ("max requests in flight", _n(e["in_flight"]), f"<= {s['max_in_flight_limit']}", mark("in_flight"),
         _n(a["in_flight"]), _n(b["in_flight"]), "", ""),
        ("round-trip depth", _n(e["depth"]), f"<= {MAX_DEPTH}", mark("depth"),
         vs(a["depth"], e["depth"], _n), vs(b["depth"], e["depth"], _n), "", ""),
        ("CPU / refresh", _s(e["cpu"]), f"<= 2 x SDK decode {_s(s['decode_cpu'])} = {_s(2 * s['decode_cpu'])}", mark("cpu"),
         vs(a["cpu"], e["cpu"]), vs(b["cpu"], e["cpu"]), "", ""),
        ("  read/snapshot/render/gzip", "/".join(_s(bd[k]) for k in ("read", "snapshot", "render", "gzip")), "", "", "", "", "", ""),
        ("peak RSS", f"{e['rss_mb']:.0f} MB", f"<= {MAX_RSS_MB} MB", mark("rss"), "", "", "", ""),
        ("exposition plain / gzip", f"{e['plain_mb']:.2f} / {e['gzip_mb']:.2f} MB", "", "", "", "", "", ""),
    ]
    for encoding in ("plain", "gzip"):
        for p in ("p50", "p99"):
            ours = e["scrapes"][encoding][p]
            target = "<= 1.5 x (d), <= (c)/10" if p == "p99" else ""
            rows.append((f"/metrics {p}, {encoding}", _s(ours), target, mark(f"p99_{encoding}") if p == "p99" else "",
                         "", "", vs(c[encoding][p], ours), floor(d[encoding][p], ours)))
    header = ("", "exporter", "target", "met", "(a) naive per validator", "(b) SDK query_map paging",
              "(c) prometheus_client", "(d) static bytes")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [" | ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def notes(s: dict[str, Any]) -> str:
    e, a, b = s["exporter"], s["naive"], s["paging"]
    c, trials = s["prometheus_client"], e["scrapes"]["plain"]["trials"]
    return "\n".join([
        f"machine: {machine()}",
        f"chain: {s['chain']['entries']:,} storage entries, {s['chain']['edges']:,} child edges; "
        f"snapshot: {e['validators']:,} validators in scope, {e['edges']:,} edges exported",
        f"exporter: medians of {s['runs']} refreshes per setting after a warm-up, each at a new block; "
        "requests and in-flight counted by the node; CPU = process time of the exporter's own process, at 0 ms",
        f"(a): {a['validators']:,} validators x 5 sequential requests, extrapolated from {a['sample_0']:,} (0 ms) "
        f"and {a['sample_latency']:,} ({s['latency_ms']:g} ms) validators spread over all subnets",
        f"(b): {b['entries']:,} entries of the same maps, each map paged 100 keys at a time, maps concurrently; "
        f"median of {b['runs']} runs per setting",
        f"/metrics: {s['scrapers']} concurrent scrapers, kept-alive connections; exporter and (d): median of "
        f"{len(trials)} loads of {trials[0]['requests']} requests per encoding, taking turns; (c): one load of "
        f"{c['plain']['requests']} requests per encoding",
        "(x) = baseline / exporter; (exp x) = exporter / floor",
    ])
