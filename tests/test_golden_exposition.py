"""The rendered exposition, byte for byte, against a golden file (node_exporter's e2e-output idea).

The snapshot comes from a literal chain read of the tricky chain and a second
read one block later with one take changed (of the watched M), a subnet being dissolved, and
MaxChildkeyTake lowered below C2's stored take (an anomaly the chain can hold: flagged, C2's take
unchanged), so the file holds every family, the change counters and the last change of one recorded
change. A deliberate change to the
output is made by running ``python -m tests.test_golden_exposition`` and
reviewing the diff of ``tests/golden/tricky.prom``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from exporter.config import ScopeConfig, WatchedHotkey
from exporter.serving.change_counters import ChangeCounters, render_last_changes
from exporter.serving.exposition import render_snapshot
from exporter.snapshot.builder import build_snapshot
from exporter.snapshot.changes import HistoryState, state_of
from tests import tricky_chain as t
from tests.test_snapshot import chain_read

GOLDEN = Path(__file__).parent / "golden" / "tricky.prom"
SCOPE = ScopeConfig(min_stake_weight=100, watch=(WatchedHotkey(t.P, 'parent "P"', expected_take=0.09), WatchedHotkey(t.M, "M")))


def rendered() -> bytes:
    first = build_snapshot(chain_read(watched_uids={(1, t.P): 0}), SCOPE)
    state, events = state_of(first, HistoryState.empty(), 0.05)
    counters = ChangeCounters(SCOPE.watched_hotkeys)
    counters.add(events)
    takes = dict(chain_read().takes)
    takes[(t.M, 1)] = 4000
    # Netuid 3 is being dissolved at the second block (the read holds nothing of it but its name).
    second = build_snapshot(chain_read(block=101, watched_uids={(1, t.P): 0}, takes=takes, dissolving=(3,), max_take=11_000), SCOPE)
    state, events = state_of(second, state, 0.05)
    assert [e.kind for e in events] == ["take_changed"]
    counters.add(events)
    # recorded two minutes after it happened (a refresh that caught up)
    last = {(e.hotkey, e.netuid, e.kind): (e.block, e.time, e.cause, e.time + 120) for e in events}
    return render_snapshot(second, counters.render() + render_last_changes(last))


def test_exposition_matches_the_golden_file_byte_for_byte():
    assert rendered() == GOLDEN.read_bytes(), "rerun `python -m tests.test_golden_exposition` only if the change is intended"


if __name__ == "__main__":
    GOLDEN.write_bytes(rendered())
    sys.stdout.write(f"wrote {GOLDEN}\n")
