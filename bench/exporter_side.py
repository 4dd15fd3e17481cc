"""The exporter's process: the production wiring (``tests.harness``), refreshes timed one by one.

CPU time is ``time.process_time()`` around one refresh: every thread
of this process (the chain-I/O event loop included), nothing of the node's.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Optional

from exporter.chain.session import ChainSession
from exporter.cli import prepare_process
from exporter.config import ChainConfig, Config, HistoryConfig
from exporter.serving.exposition import render_snapshot
from exporter.serving.publication import render
from exporter.snapshot.builder import build_snapshot
from simnode import SIMNODE_GENESIS_HASH
from tests.harness import ExporterUnderTest


class ExporterSide:
    def __init__(self, url: str, max_in_flight: int = 32, history: bool = False):
        self._tmp: Optional[str] = tempfile.mkdtemp(prefix="bench-exporter-") if history else None
        # As at start-up (the GC thresholds above all), logging at warning: one line per refresh
        # would drown the table. The SDK's runtime cache stays where the run put it, if it did.
        prepare_process(Config(log_level="warning", log_format="console", history=HistoryConfig(
            path=os.path.join(self._tmp or tempfile.gettempdir(), "history.db"))))
        self.exporter = ExporterUnderTest(
            url,
            history_path=os.path.join(self._tmp, "history.db") if self._tmp else None,
            chain=ChainConfig(endpoints=(url,), timeout_seconds=60, max_in_flight=max_in_flight,
                              genesis_hash=SIMNODE_GENESIS_HASH),
            refresh_timeout_seconds=600,
        )

    @property
    def _session(self) -> ChainSession:
        return self.exporter.session

    def url(self) -> str:
        return self.exporter.url

    def refresh(self) -> dict[str, Any]:
        wall, cpu = time.perf_counter(), time.process_time()
        ok = self.exporter.refresh()
        return {"ok": ok, "wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}

    def breakdown(self, runs: int) -> dict[str, float]:
        """Median CPU seconds of each stage of a refresh, run one stage at a time."""
        config = self.exporter.config
        samples: dict[str, list[float]] = {"read": [], "snapshot": [], "render": [], "render+gzip": []}
        for _ in range(runs):
            t0 = time.process_time()
            read, _ = self._session.read(config.scope, config.refresh_timeout_seconds)
            t1 = time.process_time()
            snapshot = build_snapshot(read, config.scope)
            t2 = time.process_time()
            render_snapshot(snapshot)
            t3 = time.process_time()
            render(snapshot)
            t4 = time.process_time()
            for stage, seconds in zip(samples, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                samples[stage].append(seconds)
        medians = {stage: statistics.median(values) for stage, values in samples.items()}
        medians["gzip"] = max(0.0, medians.pop("render+gzip") - medians["render"])
        return medians

    def payload_info(self) -> dict[str, Any]:
        payload = self.exporter.refresher.current().data
        return {
            "plain_bytes": len(payload.plain),
            "gzip_bytes": len(payload.gzip_head),
            "validators": len(payload.snapshot.validators),
            "edges": len(payload.snapshot.edges),
        }

    def validators(self) -> list[tuple[str, int]]:
        return [(v.hotkey, v.netuid) for v in self.exporter.snapshot.validators]

    def snapshot(self):
        return self.exporter.snapshot

    def peak_rss(self) -> dict[str, float]:
        """Peak resident set of this process in MiB: ru_maxrss, and VmHWM where /proc has it."""
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
        peak = {"ru_maxrss_mib": maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)}
        try:
            with open("/proc/self/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peak["vmhwm_mib"] = int(line.split()[1]) / 1024
        except OSError:
            pass
        return peak

    def close(self) -> None:
        self.exporter.close()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
