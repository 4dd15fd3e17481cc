"""What /metrics holds in each mode and with collectors switched off: only what an operator needs."""

from __future__ import annotations

from exporter.config import COLLECTORS, ScopeConfig, WatchedHotkey
from exporter.serving.exposition import render_snapshot
from exporter.snapshot.builder import build_snapshot
from tests import tricky_chain as t
from tests.harness import parse_exposition, series
from tests.test_snapshot import chain_read

WATCH_M = (WatchedHotkey(t.M, "M"),)


def families(text: bytes) -> set[str]:
    return {name for name, _ in parse_exposition(text.decode())}


def test_watched_mode_exports_the_watched_hotkey_its_edges_and_its_subnet_only():
    snapshot = build_snapshot(chain_read(), ScopeConfig(min_stake_weight=100, watch=WATCH_M, mode="watched"))
    assert [(v.hotkey, v.netuid) for v in snapshot.validators] == [(t.M, 1)]
    assert {(e.parent, e.child) for e in snapshot.edges} == {(t.P2, t.M), (t.P3, t.M)}
    assert [p.parent for p in snapshot.pending] == [t.P2], "P2's pending set gives M everything"
    assert [s.netuid for s in snapshot.subnets] == [1]
    samples = parse_exposition(render_snapshot(snapshot).decode())
    # the subnet context M is judged against is there
    assert series(samples, "bittensor_subnet_max_validators", netuid=1) == 64
    assert series(samples, "bittensor_chain_stake_threshold_alpha") == 1000


def test_the_alpha_inherited_from_each_parent_adds_up_to_the_stake_from_parents():
    samples = parse_exposition(render_snapshot(build_snapshot(chain_read(), ScopeConfig(min_stake_weight=100))).decode())
    from_each = [v for (name, labels), v in samples.items()
                 if name == "bittensor_childkey_inherited_alpha" and dict(labels)["child_hotkey"] == t.M]
    # P2 gives half of its 300 alpha, P3 all of its 500: U96F32 truncation costs a fraction of a rao
    assert sorted(from_each) == [149.9999999301508, 500.0]
    assert series(samples, "bittensor_validator_stake_from_parents_alpha", hotkey=t.M, netuid=1) == sum(from_each)


def test_each_collector_switches_off_its_families_and_only_those():
    snapshot = build_snapshot(chain_read(watched_uids={(1, t.P): 0}), ScopeConfig(min_stake_weight=100, watch=(WatchedHotkey(t.P, "P"),)))
    everything = families(render_snapshot(snapshot))
    prefixes = {
        "validator": ("bittensor_validator_own", "bittensor_validator_stake_weight", "bittensor_validator_info", "bittensor_validator_permit"),
        "stake_detail": ("bittensor_hotkey_root_stake_tao", "bittensor_validator_stake_from_parents"),
        "relationships": ("bittensor_childkey_proportion_ratio", "bittensor_childkey_pending_children"),
        "subnet": ("bittensor_subnet_max_validators", "bittensor_subnet_validator_permits"),
        "chain": ("bittensor_chain_block",),
        "watched": ("bittensor_watched_hotkey_found",),
    }
    for name, examples in prefixes.items():
        without = families(render_snapshot(snapshot, collectors=frozenset(COLLECTORS) - {name}))
        gone = everything - without
        assert all(any(f.startswith(e) for f in gone) for e in examples), name
        assert not any(any(f.startswith(e) for f in gone) for other, es in prefixes.items() if other != name for e in es), name


def test_no_family_is_repeated_per_subnet_that_belongs_to_the_hotkey():
    samples = parse_exposition(render_snapshot(build_snapshot(chain_read(), ScopeConfig(min_stake_weight=100))).decode())
    root = [dict(labels) for name, labels in samples if name == "bittensor_hotkey_root_stake_tao"]
    assert all(set(r) == {"hotkey"} for r in root) and len(root) == len({r["hotkey"] for r in root})
    assert not [name for name, _ in samples if name in ("bittensor_validator_parents", "bittensor_validator_children")]


def test_the_uid_is_a_label_of_the_permit_series_not_a_series_of_its_own():
    samples = parse_exposition(render_snapshot(build_snapshot(chain_read(), ScopeConfig(min_stake_weight=100))).decode())
    assert series(samples, "bittensor_validator_permit", hotkey=t.M, netuid=1, uid=6) == 1
    assert not [name for name, _ in samples if name == "bittensor_validator_uid"]


def test_promtool_check_metrics_is_clean_in_every_mode(tmp_path):
    import subprocess

    from tests.test_alerting import tool

    promtool = tool("promtool")
    for mode in ("network", "watched"):
        scope = ScopeConfig(min_stake_weight=100, watch=WATCH_M, mode=mode)
        text = render_snapshot(build_snapshot(chain_read(), scope))
        result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=60)
        assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (mode, result.stdout + result.stderr)


def test_promtool_check_metrics_is_clean_for_the_exporters_own_metrics():
    import subprocess
    from pathlib import Path

    from tests.test_alerting import tool

    status = (Path(__file__).parent / "golden" / "status.prom").read_bytes()
    result = subprocess.run([tool("promtool"), "check", "metrics"], input=status, capture_output=True, timeout=60)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


def test_watched_mode_gives_the_alpha_inherited_on_edges_into_watched_children_only():
    scope = ScopeConfig(min_stake_weight=100, watch=(WatchedHotkey(t.M, "M"), WatchedHotkey(t.P, "P")), mode="watched")
    snapshot = build_snapshot(chain_read(watched_uids={(1, t.P): 0}), scope)
    into_m = [e for e in snapshot.edges if e.child == t.M]
    from_p = [e for e in snapshot.edges if e.parent == t.P]
    assert len(into_m) == 2 and all(e.inherited_alpha is not None for e in into_m)
    assert len(from_p) == 5 and all(e.inherited_alpha is None for e in from_p), "P's children are not watched"
