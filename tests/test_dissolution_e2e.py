"""A subnet dissolved under a running exporter, over the real wire: caught between its cleanup phases.

The simulated node dissolves netuid 3 as subtensor PR #2412 does (``simnode/dissolution.py``):
out of NetworksAdded at once, its maps deleted phase by phase over the next blocks, so the
exporter reads it with ChildKeys gone and ParentKeys still there. Each refresh must publish
(up = 1), export nothing of netuid 3 but the dissolving flag, keep every other subnet's numbers
what the chain computes, and history must hold one dissolution and what it took, nothing else.
Run on spec 393 (no DissolveCleanupQueue: the leftovers alone say it is dissolving) and on the
newer runtime variant (which declares the queue: dissolving until the netuid leaves it).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from exporter.config import ScopeConfig, WatchedHotkey
from simnode import ChainState, SimNode
from simnode.dissolution import dissolve_network
from simnode.state import NEWER_RUNTIME_SPEC
from tests.event_model import Event, EventModel, compare
from tests.harness import series
from tests.oracle import expected as oracle
from tests.scenario_chain import HALF, MAX, QUARTER, RAO, ChainWriter, World, hotkey

GONE = 3
PA, PB, V1, C, X, V2, D1, D2, W = (hotkey(i) for i in range(70, 79))
WATCHED = (C, W)
SCOPE = ScopeConfig(min_stake_weight=0, watch=(WatchedHotkey(C, "C"), WatchedHotkey(W, "W")))
# Families that may name netuid 3 once it is gone: the flag, and history's counts and last changes of what it took.
ABOUT_THE_DISSOLUTION = {
    "bittensor_subnet_dissolving", "bittensor_subnet_changes_total", "bittensor_childkey_changes_total",
    "bittensor_validator_last_change_timestamp_seconds", "bittensor_validator_last_change_block",
    "bittensor_validator_last_change_cause_info", "bittensor_validator_last_change_recorded_timestamp_seconds",
}


def initial_world() -> World:
    """Subnet 1: PA gives V1 and C a quarter each. Subnet 2: PB gives V2 half. Subnet 3 (dissolved):
    D1 and D2 hold permits, PB gives C half and PA gives the watched W a quarter, D1 has a set pending.
    C is watched and registered on 1 and 3; root holds PA's and PB's TAO. Subnet 3 holds fewer than
    half of the permits and edges, so its loss is no step the read gate holds back."""
    world = World(
        tao_weight=MAX // 5,
        subnets={0: [PA, PB], 1: [PA, V1, C, X], 2: [V2, PB], GONE: [D1, D2, C, PB]},
        permits={0: [True, True], 1: [True, True, True, False], 2: [True, True], GONE: [True, True, False, False]},
    )
    world.stake = {(h, n): a * RAO for (h, n), a in {
        (PA, 0): 500, (PB, 0): 300, (PA, 1): 2000, (V1, 1): 300, (C, 1): 100, (X, 1): 50, (V2, 2): 1000, (PB, 2): 800,
        (D1, GONE): 600, (D2, GONE): 400, (C, GONE): 50, (PB, GONE): 900, (PA, GONE): 700}.items()}
    world.takes = {(C, 1): 1500, (C, GONE): 2000, (W, GONE): 1000}
    world.child_keys = {(PA, 1): [(QUARTER, V1), (QUARTER, C)], (PB, 2): [(HALF, V2)],
                        (PB, GONE): [(HALF, C)], (PA, GONE): [(QUARTER, W)]}
    world.pending = {(GONE, D1): ([(QUARTER, D2)], 8000)}
    world.owners = {h: hotkey(i + 150) for i, h in enumerate((PA, PB, V1, C, X, V2, D1, D2, W))}
    return world


def without_subnet(world: World, netuid: int) -> World:
    """The world once ``netuid`` left NetworksAdded: its other entries stay as leftovers (the model ignores them)."""
    gone = world.copy()
    del gone.subnets[netuid], gone.permits[netuid]
    return gone


def recorded(db: Path) -> list[tuple[Event, str, int]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT block, kind, hotkey, netuid, parent, child, old_value, new_value, cause, extrinsic "
                            "FROM events ORDER BY id").fetchall()
    return [(Event(block, kind, hotkey_, netuid, parent, child, None if old is None else json.loads(old),
                   None if new is None else json.loads(new)), cause, extrinsic)
            for block, kind, hotkey_, netuid, parent, child, old, new, cause, extrinsic in rows]


def netuid_series(samples: dict, netuid: int) -> set[str]:
    return {name for name, labels in samples if dict(labels).get("netuid") == str(netuid)}


def check_other_subnets(samples: dict, world: World) -> None:
    """Every exported validator of subnets 1 and 2 has the chain's numbers (tests/oracle.py), and C on
    subnet 1 the hand-computed ones: its parent PB's edge on netuid 3 lingers in ParentKeys, and counts for nothing."""
    exported = {(dict(labels)["hotkey"], int(dict(labels)["netuid"])) for name, labels in samples
                if name == "bittensor_validator_stake_weight_alpha"}
    assert {n for _, n in exported} == {1, 2}
    for hotkey_, netuid in exported:
        want = oracle(world, hotkey_, netuid, world.tao_weight)
        key = {"hotkey": hotkey_, "netuid": netuid}
        assert series(samples, "bittensor_validator_own_stake_alpha", **key) == want["own"] / RAO
        assert series(samples, "bittensor_validator_inherited_stake_alpha", **key) == want["inherited"] / RAO
        assert series(samples, "bittensor_validator_stake_weight_alpha", **key) == pytest.approx(
            float(want["stake_weight"]) / RAO, rel=1e-12)
    # C on 1: A_in = 2000e9 * q(1/4) with q = floor(2^32 * QUARTER / MAX) / 2^32 = 1073741823 / 2^32,
    # A_inh = floor(100e9 + 499_999_999_534.34) = 599_999_999_534; T_inh = floor(500e9 * q) = 124_999_999_883;
    # SW = A_inh + T_inh * 858993459 / 2^32 (w = TaoWeight MAX // 5) = 624_999_999_504.78 rao.
    assert series(samples, "bittensor_validator_inherited_stake_alpha", hotkey=C, netuid=1) == 599.999999534
    assert series(samples, "bittensor_validator_stake_weight_alpha", hotkey=C, netuid=1) == pytest.approx(624.9999995047792, rel=1e-12)
    assert series(samples, "bittensor_validator_stake_from_parents_alpha", hotkey=C, netuid=1) == pytest.approx(499.9999995343387, rel=1e-12)
    assert series(samples, "bittensor_validator_childkey_take_ratio", hotkey=C, netuid=1) == 1500 / 65535


@pytest.mark.parametrize("spec", [393, NEWER_RUNTIME_SPEC])
def test_a_dissolution_caught_between_its_phases_is_published_at_once_and_recorded_once(spec, exporter_factory, tmp_path):
    state, db = ChainState(spec), tmp_path / "history.db"
    world = initial_world()
    model = EventModel(watched=WATCHED)
    expected: list[Event] = []
    with SimNode(state) as node:
        exporter = exporter_factory(node, scope=SCOPE, history_path=str(db))

        def refresh(block: int, world_now: World) -> dict:
            assert exporter.refresh(), f"block {block}: the refresh failed"
            samples = exporter.scrape()
            assert series(samples, "bittensor_exporter_up") == 1 and series(samples, "bittensor_chain_block") == block
            expected.extend(model.observe(world_now, block))
            return samples

        assert ChainWriter(state).commit(world) == 1
        samples = refresh(1, world)
        assert series(samples, "bittensor_validator_own_stake_alpha", hotkey=D1, netuid=GONE) == 600
        assert not netuid_series(samples, GONE) & {"bittensor_subnet_dissolving"}

        # Block 2: dissolved (NetworkRemoved, the first extrinsic), and on_idle deletes the stake totals.
        cleanup = dissolve_network(state, GONE)
        cleanup.step()
        assert state.commit_block()[0] == 2
        gone = without_subnet(world, GONE)
        samples = refresh(2, gone)
        assert netuid_series(samples, GONE) <= ABOUT_THE_DISSOLUTION
        assert series(samples, "bittensor_subnet_dissolving", netuid=GONE) == 1
        check_other_subnets(samples, gone)

        # Block 3: on to ChildKeys: ParentKeys[C, 3] and [W, 3] still name their parents.
        cleanup.run_through("child_keys")
        state.commit_block()
        assert state.get("ParentKeys", [C, GONE]) == [(HALF, PB)] and state.get("ChildKeys", [PB, GONE]) is None
        samples = refresh(3, gone)
        assert netuid_series(samples, GONE) <= ABOUT_THE_DISSOLUTION
        assert series(samples, "bittensor_subnet_dissolving", netuid=GONE) == 1
        check_other_subnets(samples, gone)

        # Block 4: ParentKeys deleted: nothing of it left that the exporter reads; the newer runtime
        # still has it queued. Block 5: the cleanup done.
        cleanup.step()
        state.commit_block()
        samples = refresh(4, gone)
        assert series(samples, "bittensor_subnet_dissolving", netuid=GONE) == (1 if spec == NEWER_RUNTIME_SPEC else None)
        cleanup.finish()
        state.commit_block()
        samples = refresh(5, gone)
        assert "bittensor_subnet_dissolving" not in netuid_series(samples, GONE)
        check_other_subnets(samples, gone)

    events = recorded(db)
    diff = compare(expected, [e for e, _, _ in events])
    assert diff.ok, str(diff)
    assert [e.kind for e, _, _ in events].count("subnet_dissolved") == 1
    assert {(e.block, cause, extrinsic) for e, cause, extrinsic in events} == {(2, "NetworkRemoved", 1)}
    # What it took: D1's and D2's permits, the two edges into C and W, D1's pending set.
    assert sorted((e.kind, e.hotkey) for e, _, _ in events) == sorted([
        ("subnet_dissolved", ""), ("permit_lost", D1), ("permit_lost", D2), ("edge_removed", C), ("edge_removed", W),
        ("pending_dropped", D1)])
    status, _, body = exporter.get(f"/api/v1/events?kind=subnet_dissolved&netuid={GONE}")
    assert status == 200
    (event,) = json.loads(body)["events"]
    assert (event["block"], event["hotkey"], event["cause"], event["extrinsic"], event["old"]) == \
        (2, "", "NetworkRemoved", 1, {"permits": 2, "edges": 2, "pending": 1})
