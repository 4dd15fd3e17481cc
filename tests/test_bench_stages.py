"""``python -m bench.stages`` runs end to end on the demo chain, so it cannot rot unnoticed.

In a process of its own, as an operator runs it and as ``make bench`` runs it
(``run_separately``): it sets the process's GC thresholds and logging.
"""

from __future__ import annotations

import inspect

from bench.stages import run_separately
from simnode import ChainState
from simnode.epoch import _Storage
from simnode.scenarios import larger


def test_stages_reports_each_stage_of_steady_refreshes():
    result = run_separately("demo", runs=2, warmup=1, latency_ms=0, timeout=300)
    output = result["output"]
    assert "render" in output and "finalized-head ask" in output and "permit holders" in output
    assert len(result["runs"]) == 2 and result["elapsed"] > 0
    assert result["options"]["history"] and result["chain"]["permit_holders"] == 4 * 8  # demo: 4 subnets x 8
    median = result["median"]
    assert {"cpu.read", "cpu.snapshot", "cpu.changes", "cpu.history", "cpu.render"} <= set(median)
    assert median["cpu"] > 0 and median["plain_bytes"] > median["gzip_bytes"] > 0
    assert result["head_ask"]["requests"] == 1


def test_larger_chain_has_the_sizes_it_claims():
    """The full build takes seconds: its parameters here, their arithmetic on a small build."""
    defaults = {name: p.default for name, p in inspect.signature(larger).parameters.items() if name != "state"}
    assert (defaults["netuids"] - 1) * defaults["permits"] == 8_128 and defaults["edges"] >= 7_171
    small = {**defaults, "netuids": 9, "uids": 32, "permits": 8, "edges": 60, "pending": 5, "pool": 20, "departed": 7}
    state = ChainState()
    world = larger(state, **small)
    assert sum(sum(world.permits[n]) for n in world.permits if n) == 8 * 8
    assert world.edge_count >= 60 and len(world.pending) == 5
    assert len(world.departed) == 8 * 7 and not set(world.departed) & set(world.stake)
    # a take for every child and every validator on its subnet (takes, 15,000, is only the cap)
    children = {(child, n) for (_, n), group in world.child_keys.items() for _, child in group}
    assert children <= set(world.takes) and len(world.takes) < defaults["takes"]
    per_subnet = 6 * len(world.hotkeys) + 2 * sum(map(len, world.hotkeys.values()))  # + Keys, Uids
    maps = (world.stake, world.departed, world.coldkey, world.child_keys, world.parent_keys, world.pending, world.takes)
    assert world.entries == 1 + per_subnet + sum(map(len, maps)) + 6 + world.activity_entries  # Timestamp.Now, the plain items
    # the activity: six vectors per subnet but root, a take for some delegates, the last epoch's dividends
    found = _Storage(state).key_params(["Delegates", "AlphaDividendsPerSubnet", "RootAlphaDividendsPerSubnet"])
    assert world.activity_entries == 6 * (len(world.hotkeys) - 1) + sum(map(len, found.values())) > 0
    again = larger(ChainState(), **small)
    assert (again.entries, again.departed, again.takes) == (world.entries, world.departed, world.takes)


def test_read_floor_times_the_json_and_the_decoders_of_steady_reads(capsys):
    from bench.read_floor import main

    assert main(["demo"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("demo: five steady reads") and len(lines) == 6
    assert all("JSON decoding" in line and "MB" in line for line in lines[1:])
