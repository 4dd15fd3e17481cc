"""States the real chain can hold though no write path makes them, through the real SDK against the
simulated node: each is published within one refresh, computed as the chain computes it (hand-computed
expectations), flagged by bittensor_chain_anomalous_entries, and history records only what changed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from exporter.config import ScopeConfig, WatchedHotkey
from simnode import ChainState, SimNode
from simnode.actions import apply_pending_children, schedule_children, set_max_childkey_take, set_min_childkey_take_per_subnet, swap_hotkey
from simnode.state import NEWER_RUNTIME_SPEC
from tests import tricky_chain as t
from tests.harness import series

RAO = t.RAO
Q_HALF = 2147483647  # the chain's U96F32 share of HALF: floor(2**32 * HALF / MAX)
NEW = t.hotkey(50)  # a swap's new hotkey, unused before
X = t.hotkey(60)


def events_in(db: Path) -> set[tuple]:
    with sqlite3.connect(db) as conn:
        return set(conn.execute("SELECT kind, hotkey, netuid, parent, child, cause FROM events").fetchall())


def anomalies(samples: dict) -> dict:
    return {(dict(k)["rule"], dict(k)["netuid"]): v for (name, k), v in samples.items()
            if name == "bittensor_chain_anomalous_entries"}


def chain(spec: int = 393, skip=()) -> ChainState:
    state = ChainState(spec)
    for pallet, item, params, value in t.storage_writes():
        if (item, tuple(params)) not in skip:
            state.set(item, params, value, pallet=pallet)
    state.commit_block()
    return state


@pytest.fixture
def run(exporter_factory, tmp_path):
    """(state, exporter, db) over a simulated node of ``chain(...)``, after its first refresh."""
    nodes = []

    def start(state: ChainState, watch=(), clean: bool = True):
        node = SimNode(state).__enter__()
        nodes.append(node)
        db = tmp_path / "history.db"
        scope = ScopeConfig(min_stake_weight=100, watch=tuple(WatchedHotkey(h, a) for h, a in ((t.P, "P"), *watch)))
        exporter = exporter_factory(node, scope=scope, history_path=str(db))
        assert exporter.refresh()
        assert events_in(db) == set() and (not clean or anomalies(exporter.scrape()) == {})
        return state, exporter, db

    yield start
    for node in nodes:
        node.__exit__(None, None, None)


def refreshed(state: ChainState, exporter) -> dict:
    """Commit the pending block, refresh once: published (up), and the samples served."""
    state.commit_block()
    with capture_logs() as logs:
        assert exporter.refresh(), ("published within one refresh", [e for e in logs if e["log_level"] != "info"])
    exporter.logs = logs
    samples = exporter.scrape()
    assert series(samples, "bittensor_exporter_up") == 1
    return samples


def test_a_lowered_max_take_leaves_takes_above_it_which_stay_whole(run):
    state, exporter, db = run(chain())
    set_max_childkey_take(state, 5000)
    s = refreshed(state, exporter)
    assert series(s, "bittensor_chain_max_childkey_take_ratio") == 5000 / 65535
    # C2's stored 11796 is above the new bound: the chain pays with it whole
    assert series(s, "bittensor_validator_childkey_take_ratio", hotkey=t.C2, netuid=1) == 11796 / 65535
    assert series(s, "bittensor_validator_stored_childkey_take_ratio", hotkey=t.C2, netuid=1) == 11796 / 65535
    assert series(s, "bittensor_validator_childkey_take_ratio", hotkey=t.C3, netuid=1) == 5000 / 65535, "at the bound: fine"
    assert anomalies(s) == {("take_above_max", "1"): 1}
    assert [(e["event"], e["rule"], e["netuid"]) for e in exporter.logs if e.get("rule")] == \
        [("chain state the write paths would not make", "take_above_max", 1)]
    assert events_in(db) == set(), "no effective take moved"
    set_max_childkey_take(state, 11_796)
    s = refreshed(state, exporter)
    assert anomalies(s) == {} and events_in(db) == set()
    assert [(e["event"], e["rule"]) for e in exporter.logs if e.get("rule")] == [("chain state cleared", "take_above_max")]


def test_a_per_subnet_minimum_above_the_max_raises_every_take_without_a_take_event(run):
    state, exporter, db = run(chain(NEWER_RUNTIME_SPEC))
    set_min_childkey_take_per_subnet(state, 1, 12_000)  # above MaxChildkeyTake 11796
    s = refreshed(state, exporter)
    for hotkey in (t.C1, t.C2, t.C3, t.M):  # stored 0, 11796, 5000, 3000: all below the minimum now
        assert series(s, "bittensor_validator_childkey_take_ratio", hotkey=hotkey, netuid=1) == 12_000 / 65535
    assert series(s, "bittensor_validator_stored_childkey_take_ratio", hotkey=t.M, netuid=1) == 3000 / 65535
    assert series(s, "bittensor_validator_childkey_take_ratio", hotkey=t.V2, netuid=2) == 0, "another subnet"
    assert anomalies(s) == {("min_take_above_max", "1"): 1}
    # Every tracked validator of netuid 1 (the ten permit holders) took the new minimum: a real change,
    # placed at the setter's event.
    holders = {t.P, *t.CHILDREN, t.M, t.P2, t.P3, t.Z}
    assert events_in(db) == {("take_changed", h, 1, None, None, "MinChildKeyTakePerSubnetSet") for h in holders}


def test_leftover_parents_after_an_old_swap_are_read_each_map_on_its_own(run):
    state, exporter, db = run(chain(), watch=((t.M, "M"), (NEW, "new")))
    # Before October 2024 a swap moved P3's ChildKeys to NEW but left P3 in M's ParentKeys.
    swap_hotkey(state, t.COLD[t.P3], t.P3, NEW, rebind_children_parents=False)
    s = refreshed(state, exporter)
    # M receives from P2 (half of 300) and from P3, who has no stake left: 0; NEW gives all its 500 to M
    # through ChildKeys, which M's ParentKeys does not list: the chain loses it.
    share = 300 * RAO * Q_HALF / 2**32  # 149_999_999_930.15...
    assert series(s, "bittensor_validator_stake_from_parents_alpha", hotkey=t.M, netuid=1) == share / RAO
    assert series(s, "bittensor_validator_inherited_stake_alpha", hotkey=t.M, netuid=1) == (50 * RAO + 149_999_999_930) / RAO
    assert series(s, "bittensor_validator_stake_weight_alpha", hotkey=t.M, netuid=1) == (50 * RAO + 149_999_999_930) / RAO
    assert series(s, "bittensor_validator_inherited_root_stake_tao", hotkey=t.M, netuid=1) == 0
    assert series(s, "bittensor_validator_stake_to_children_alpha", hotkey=NEW, netuid=1) == 500
    assert series(s, "bittensor_validator_inherited_stake_alpha", hotkey=NEW, netuid=1) == 0
    assert series(s, "bittensor_childkey_proportion_ratio", parent_hotkey=NEW, child_hotkey=t.M, netuid=1) == 1
    assert series(s, "bittensor_childkey_inherited_alpha", parent_hotkey=NEW, child_hotkey=t.M, netuid=1) == 0
    assert series(s, "bittensor_childkey_proportion_ratio", parent_hotkey=t.P3, child_hotkey=t.M, netuid=1) is None
    assert series(s, "bittensor_childkey_inherited_alpha", parent_hotkey=t.P3, child_hotkey=t.M, netuid=1) == 0
    assert anomalies(s) == {("parents_do_not_mirror_children", "1"): 2}  # NEW -> M and P3 -> M
    # What changed on the chain, and only that: the swap rebound the edge and the uid, and M's
    # stake weight fell from ~720 to ~200 alpha.
    assert {(kind, hotkey, parent) for kind, hotkey, _, parent, _, _ in events_in(db)} == {
        ("edge_removed", t.M, t.P3), ("edge_added", t.M, NEW), ("permit_lost", t.P3, None), ("permit_gained", NEW, None),
        ("stake_weight_moved", t.M, None), ("uid_replaced", t.P3, None),  # P3's uid is NEW's now
    }
    before = events_in(db)
    refreshed(state, exporter)
    assert events_in(db) == before, "the state lasting records nothing more"


def test_a_parent_listed_twice_gives_its_share_twice(run):
    state, exporter, db = run(chain(), watch=((t.M, "M"),))
    # A swap that appended P2 to M's list already naming it (ChildKeys[P2] still lists M once).
    state.set("ParentKeys", [t.M, 1], [(t.HALF, t.P2), (t.HALF, t.P2), (t.MAX, t.P3)])
    s = refreshed(state, exporter)
    share = 300 * RAO * Q_HALF / 2**32  # each entry's share, truncated on its own: 149_999_999_930.15...
    assert series(s, "bittensor_validator_stake_from_parents_alpha", hotkey=t.M, netuid=1) == (2 * share + 500 * RAO) / RAO
    inherited = 50 * RAO + 2 * 149_999_999_930 + 500 * RAO
    assert series(s, "bittensor_validator_inherited_stake_alpha", hotkey=t.M, netuid=1) == inherited / RAO
    assert series(s, "bittensor_childkey_inherited_alpha", parent_hotkey=t.P2, child_hotkey=t.M, netuid=1) == 2 * share / RAO
    assert series(s, "bittensor_childkey_proportion_ratio", parent_hotkey=t.P2, child_hotkey=t.M, netuid=1) == t.HALF / t.MAX
    assert anomalies(s) == {("duplicate_parent", "1"): 1}
    # M's stake weight rose from ~720 to ~870 alpha: a real change; no edge changed (ChildKeys did not).
    assert {(kind, hotkey) for kind, hotkey, *_ in events_in(db)} == {("stake_weight_moved", t.M)}


def test_a_swap_leaves_a_pending_list_naming_a_child_twice_and_one_naming_its_parent(run):
    state, exporter, db = run(chain(), watch=((t.M, "M"), (X, "x")))
    schedule_children(state, t.P3, 1, [(t.QUARTER, X), (t.QUARTER, t.C1)], cooldown=5000)
    refreshed(state, exporter)
    before = events_in(db)
    swap_hotkey(state, t.COLD[t.C1], t.C1, X)  # P3's list: X twice
    # A swap of P2's old hotkey would leave P2 in its own moved list: stored as such.
    state.set("PendingChildKeys", [1, t.P2], ([(t.QUARTER, t.M), (t.HALF, t.P2)], 7300))
    s = refreshed(state, exporter)
    # Exported as the chain will apply them: X once at the last quarter, P2's list without P2.
    assert series(s, "bittensor_childkey_pending_children", parent_hotkey=t.P3, netuid=1) == 1
    assert series(s, "bittensor_childkey_pending_proportion_ratio", parent_hotkey=t.P3, child_hotkey=X, netuid=1) == t.QUARTER / t.MAX
    assert series(s, "bittensor_childkey_pending_children", parent_hotkey=t.P2, netuid=1) == 1
    assert series(s, "bittensor_childkey_pending_proportion_ratio", parent_hotkey=t.P2, child_hotkey=t.P2, netuid=1) is None
    assert series(s, "bittensor_childkey_pending_proportion_change_ratio", parent_hotkey=t.P2, child_hotkey=t.M, netuid=1) == \
        t.QUARTER / t.MAX - t.HALF / t.MAX
    assert anomalies(s) == {("pending_self_or_duplicate", "1"): 2}
    # X took C1's place (uid 1, 10 alpha, a fifth of P's stake)
    assert series(s, "bittensor_validator_inherited_stake_alpha", hotkey=X, netuid=1) == t.EXPECTED["child"]["inherited"] / RAO
    # History: the swap's real changes and the two pending lists as stored (what the chain holds).
    new = {(kind, hotkey, parent) for kind, hotkey, _, parent, _, _ in events_in(db) - before}
    assert new == {("edge_removed", t.C1, t.P), ("edge_added", X, t.P), ("permit_lost", t.C1, None),
                   ("permit_gained", X, None), ("pending_scheduled", t.P3, t.P3), ("pending_scheduled", t.P2, t.P2),
                   ("uid_replaced", t.C1, None)}  # C1's uid is X's now

    # The sets apply (as subtensor's block step does it): X once at a quarter, M alone at a quarter.
    before = events_in(db)
    assert sorted(apply_pending_children(state, 1, block=7350)) == sorted([t.P2, t.P3])
    s = refreshed(state, exporter)
    assert series(s, "bittensor_childkey_proportion_ratio", parent_hotkey=t.P3, child_hotkey=X, netuid=1) == t.QUARTER / t.MAX
    assert series(s, "bittensor_childkey_proportion_ratio", parent_hotkey=t.P2, child_hotkey=t.M, netuid=1) == t.QUARTER / t.MAX
    assert anomalies(s) == {}
    changes = {(kind, hotkey, parent, cause) for kind, hotkey, _, parent, _, cause in events_in(db) - before}
    assert {c for c in changes if not c[0].endswith("_moved")} == {
        ("pending_applied", t.P3, t.P3, "SetChildren"), ("pending_applied", t.P2, t.P2, "SetChildren"),
        ("edge_removed", t.M, t.P3, "SetChildren"), ("edge_added", X, t.P3, "SetChildren"),
        ("proportion_changed", t.M, t.P2, "SetChildren"),
    }


def test_a_hotkey_twice_in_keys_skips_the_epoch_so_no_permit_is_projected_to_move(run):
    state, exporter, db = run(chain())
    s = exporter.scrape()
    assert series(s, "bittensor_validator_projected_permit", hotkey=t.P, netuid=1) == 0, \
        "at a run epoch P (325 rao of stake weight) loses its permit"
    state.set("Keys", [1, 10], t.P)  # NP's uid now names P too
    s = refreshed(state, exporter)
    assert series(s, "bittensor_validator_projected_permit", hotkey=t.P, netuid=1) is None, "skipped: permits stay"
    assert series(s, "bittensor_validator_permit", hotkey=t.P, netuid=1, uid=0) == 1
    assert series(s, "bittensor_subnet_validator_permits", netuid=1) == 10
    assert series(s, "bittensor_validator_stake_weight_alpha", hotkey=t.Z, netuid=1) == t.EXPECTED[t.Z]["stake_weight"] / RAO
    assert anomalies(s) == {("duplicate_hotkey", "1"): 2}
    assert events_in(db) == set()


def test_a_permitted_uid_without_keys_weighs_nothing(run):
    # The node holds the state from its first block: Z's uid 9 keeps its permit, Keys[1, 9] is absent.
    state, exporter, db = run(chain(skip={("Keys", (1, 9))}), clean=False)
    s = exporter.scrape()
    assert anomalies(s) == {("permit_without_hotkey", "1"): 1}
    assert series(s, "bittensor_validator_stake_weight_alpha", hotkey=t.Z, netuid=1) is None, "no hotkey: no validator"
    assert series(s, "bittensor_subnet_validator_permits", netuid=1) == 10, "the permit is the chain's"
    # Weight 0 at the epoch: of the uids left, only NP (2M alpha, a quarter given to Z) passes
    # StakeThreshold, so k = 64 leaves no rank boundary; P still loses its permit.
    assert series(s, "bittensor_subnet_permit_cutoff_stake_weight_alpha", netuid=1) is None
    assert series(s, "bittensor_validator_projected_permit", hotkey=t.P, netuid=1) == 0
    assert exporter.snapshot.projected_permits[1] == (False,) * 10 + (True,)
    refreshed(state, exporter)
    assert events_in(db) == set(), "the state lasting records nothing"
