"""``python -m bench.stages`` runs end to end on the demo chain, so it cannot rot unnoticed.

In a process of its own, as an operator runs it: it sets the process's GC thresholds and logging.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_stages_reports_each_stage_of_steady_refreshes(tmp_path):
    out = tmp_path / "stages.json"
    done = subprocess.run([sys.executable, "-m", "bench.stages", "--scenario", "demo", "--runs", "2", "--warmup", "1",
                           "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "render" in done.stdout and "finalized-head ask" in done.stdout
    result = json.loads(out.read_text())
    assert len(result["runs"]) == 2
    median = result["median"]
    assert {"cpu.read", "cpu.snapshot", "cpu.changes", "cpu.history", "cpu.render"} <= set(median)
    assert median["cpu"] > 0 and median["plain_bytes"] > median["gzip_bytes"] > 0
    assert result["head_ask"]["requests"] == 1
