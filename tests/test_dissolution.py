"""A subnet being dissolved, with literal inputs: its leftovers never reach a read, a snapshot or history.

Subtensor PR #2412: the netuid leaves NetworksAdded at once and ``on_idle`` deletes its maps
phase by phase, so a read can hold ParentKeys of it without their ChildKeys, a permit vector
without Keys, stakes of no subnet. The tricky chain (``tests/tricky_chain.py``) gets a netuid 3
that is being dissolved; everything derived from the read must be what the chain without it gives.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from exporter.config import ScopeConfig, WatchedHotkey
from exporter.serving.exposition import render_snapshot
from exporter.snapshot.builder import build_snapshot
from exporter.snapshot.causes import changes_since
from exporter.snapshot.changes import HistoryState, state_of
from exporter.snapshot.dissolution import without_dissolved
from exporter.snapshot.model import ChainEvent, EventWindow
from exporter.snapshot.read_rules import InvalidRead
from exporter.snapshot.validate import ReadGate
from tests import tricky_chain as t
from tests.test_chain_reader import FakeSource, read, tricky_writes
from tests.test_snapshot import chain_read

GONE = 3
SCOPE = ScopeConfig(min_stake_weight=0, watch=(WatchedHotkey(t.P, "parent"), WatchedHotkey(t.V2, "V2")))
S = "SubtensorModule"
PENDING_REVOKE = ((), 7500)  # V2 schedules a revocation on netuid 3


def with_subnet_3(read=None, **overrides):
    """The tricky chain read with netuid 3 a live subnet: V2 and M hold permits, P2 gives M half,
    V2 has a revocation pending, M a take, and stakes."""
    read = read or chain_read()
    return replace(replace(
        read,
        netuids=(0, 1, 2, GONE),
        permits={**read.permits, GONE: (True, True)},
        subnet_sizes={**read.subnet_sizes, GONE: 2},
        max_validators={**read.max_validators, GONE: 64},
        hotkeys={**read.hotkeys, (GONE, 0): t.V2, (GONE, 1): t.M},
        children={**read.children, (t.P2, GONE): ((t.HALF, t.M),)},
        parents={**read.parents, (t.M, GONE): ((t.HALF, t.P2),)},
        pending={**read.pending, (GONE, t.V2): PENDING_REVOKE},
        stake={**read.stake, (t.V2, GONE): 700 * t.RAO, (t.M, GONE): 30 * t.RAO, (t.P2, GONE): 90 * t.RAO},
        takes={**read.takes, (t.M, GONE): 2000},
    ), **overrides)


def dissolving_read(**overrides):
    """The same read once netuid 3 left NetworksAdded, ChildKeys already deleted, the rest not yet."""
    live = with_subnet_3()
    return replace(live, netuids=(0, 1, 2), children=chain_read().children, **overrides)


# -- the read ------------------------------------------------------------------------


def test_every_entry_of_a_netuid_outside_networks_added_is_dropped_and_the_netuid_named():
    leftovers = dissolving_read(min_take_per_subnet={1: 100, GONE: 900},
                                suspended={(t.NP, None): True, (t.P2, GONE): True, (t.P3, 1): False})
    got = without_dissolved(leftovers)
    clean = chain_read(min_take_per_subnet={1: 100}, suspended={(t.NP, None): True, (t.P3, 1): False})
    # What stage 1 reads is dropped; what later stages would read of it is never asked for (the
    # reader plans them from the filtered read), so the hotkeys, stakes and takes stay as given here.
    assert got.netuids == clean.netuids and got.dissolving == (GONE,)
    for name in ("permits", "subnet_sizes", "children", "parents", "pending", "min_take_per_subnet", "suspended"):
        assert getattr(got, name) == getattr(clean, name), name


def test_a_read_without_leftovers_is_the_very_read():
    clean = chain_read()
    assert without_dissolved(clean) is clean
    assert without_dissolved(clean, []) is clean


def test_a_queued_netuid_is_dissolving_with_no_leftover_left_and_no_subnet_even_if_added():
    got = without_dissolved(chain_read(), [GONE])
    assert got.dissolving == (GONE,) and got.netuids == (0, 1, 2)
    # The chain never keeps a queued netuid in NetworksAdded (get_next_netuid skips the queue);
    # if a read says both, the queue wins: it is being deleted.
    both = without_dissolved(with_subnet_3(), [GONE])
    assert both.netuids == (0, 1, 2) and both.dissolving == (GONE,)
    assert (both.permits, both.children, both.parents, both.pending) == \
        (chain_read().permits, chain_read().children, chain_read().parents, chain_read().pending)


@pytest.mark.parametrize("queue, leftover", [([0], None), ([5000], None), (None, 5000)])
def test_a_netuid_the_chain_cannot_dissolve_is_refused(queue, leftover):
    read_ = chain_read() if leftover is None else chain_read(children={**chain_read().children, (t.P, leftover): ((1, t.M),)})
    with pytest.raises(InvalidRead) as refused:
        without_dissolved(read_, queue)
    assert refused.value.rule == "netuid_out_of_range"


def leftover_writes(children_deleted: bool = True) -> list:
    """Netuid 3's storage between two cleanup phases: out of NetworksAdded, ChildKeys deleted,
    ParentKeys, pending sets, permits, sizes, uids, stakes and takes still there."""
    writes = [
        (S, "ValidatorPermit", [GONE], [True, True]), (S, "SubnetworkN", [GONE], 2),
        (S, "Keys", [GONE, 0], t.V2), (S, "Keys", [GONE, 1], t.M), (S, "Uids", [GONE, t.P], 0),
        (S, "ParentKeys", [t.M, GONE], [(t.HALF, t.P2)]), (S, "PendingChildKeys", [GONE, t.V2], ([], 7500)),
        (S, "TotalHotkeyAlpha", [t.M, GONE], 30 * t.RAO), (S, "TotalHotkeyAlpha", [t.P, GONE], 30 * t.RAO),
        (S, "ChildkeyTake", [t.M, GONE], 2000),
    ]
    if not children_deleted:
        writes.append((S, "ChildKeys", [t.P2, GONE], [(t.HALF, t.M)]))
    return writes


def expected_clean_read():
    return chain_read(
        hotkeys={(n, uid): h for (n, uid), h in chain_read().hotkeys.items() if n != 0},
        watched_uids={(0, t.P): 0, (1, t.P): 0},
        coldkeys={h: c for h, c in t.COLD.items() if h != t.NP},
        subnet_sizes={0: 2, 1: 11, 2: 2}, owners={1: t.OWNER, 2: t.OWNER}, tempos={1: 360, 2: 360},
        max_validators={1: 64, 2: 64},
    )


def test_the_reader_reads_nothing_of_a_dissolving_netuid_and_the_gate_admits_the_broken_mirror():
    scope = ScopeConfig(min_stake_weight=100, watch=(WatchedHotkey(t.P, "parent"),))
    source = FakeSource.of([*tricky_writes(), *leftover_writes()])
    got = read(source, scope)
    assert got == replace(expected_clean_read(), dissolving=(GONE,))
    netuid_at = {"Keys": 0, "Uids": 0, "MaxAllowedValidators": 0, "Tempo": 0, "SubnetOwnerHotkey": 0,
                 "TotalHotkeyAlpha": 1, "ChildkeyTake": 1}
    asked = [(item, k) for c in source.calls if c.method == "batch" for item in c.items for k in c.keys
             if item in netuid_at and k[netuid_at[item]] == GONE]
    assert asked == [], "no key of netuid 3 is asked for"
    # ParentKeys[M, 3] without its ChildKeys never reaches the gate's checks
    ReadGate().admit(replace(got, block_hash="0x" + "ab" * 32), scope)


def test_the_reader_names_a_queued_netuid_once_nothing_of_it_is_left():
    scope = ScopeConfig(min_stake_weight=100, watch=(WatchedHotkey(t.P, "parent"),))
    writes = [*tricky_writes(), (S, "DissolveCleanupQueue", [], [GONE])]
    got = read(FakeSource.of(writes, optional_items={"DissolveCleanupQueue"}), scope)
    assert got == replace(expected_clean_read(), dissolving=(GONE,))
    assert read(FakeSource.of(tricky_writes(), optional_items={"DissolveCleanupQueue"}), scope).dissolving == ()


# -- the snapshot --------------------------------------------------------------------


def test_the_snapshot_of_a_dissolving_read_is_the_snapshot_without_the_subnet():
    got = build_snapshot(without_dissolved(dissolving_read(watched_uids={(1, t.P): 0})), SCOPE)
    clean = build_snapshot(chain_read(watched_uids={(1, t.P): 0}), SCOPE)
    assert got.dissolving == (GONE,) and clean.dissolving == ()
    for name in ("validators", "edges", "pending", "identities", "subnets", "chain_edges", "chain_pending", "tracked",
                 "pending_effects", "watched", "projected_permit_changes", "projected_permits", "after_pending",
                 "permit_changes_after_pending", "netuids"):
        assert getattr(got, name) == getattr(clean, name), name
    exposition = render_snapshot(got).decode()
    assert [line for line in exposition.splitlines() if f'netuid="{GONE}"' in line] == [f'bittensor_subnet_dissolving{{netuid="{GONE}"}} 1']


def test_the_netuid_filter_applies_to_the_dissolving_series():
    scope = replace(SCOPE, netuids=(1,))
    assert build_snapshot(without_dissolved(dissolving_read()), scope).dissolving == ()


# -- history -------------------------------------------------------------------------


def removed(block: int = 104, extrinsic: int = 2) -> ChainEvent:
    return ChainEvent(block, 0, extrinsic, "NetworkRemoved", (), (GONE,))


def window(*events: ChainEvent, first: int = 101, read_from: int = 101, last: int = 110) -> EventWindow:
    return EventWindow(first=first, read_from=read_from, last=last, events=events,
                       times={b: 1000.0 + 12 * b for b in range(read_from, last + 1)})


def recorded_before() -> HistoryState:
    state, baseline = state_of(build_snapshot(with_subnet_3(), SCOPE), HistoryState.empty(), 0.05)
    assert baseline == []
    return state


def after() -> object:
    return build_snapshot(without_dissolved(replace(dissolving_read(), block=110)), SCOPE)


LOSSES = [
    ("subnet_dissolved", "", GONE, None, {"permits": 2, "edges": 1, "pending": 1}, None),
    ("edge_removed", t.M, GONE, t.P2, 0.5, None),
    ("pending_dropped", t.V2, GONE, t.V2, {"children": [], "cooldown_block": 7500}, None),
    ("permit_lost", t.M, GONE, None, True, False),
    ("permit_lost", t.V2, GONE, None, True, False),
]


def losses(changes) -> list:
    return [(c.kind, c.hotkey, c.netuid, c.parent, c.old, c.new) for c in changes]


def test_a_dissolution_is_one_event_and_its_losses_all_placed_at_network_removed():
    state, changes = changes_since(recorded_before(), after(), 0.05, window(removed()))
    assert losses(changes) == LOSSES
    assert {(c.block, c.cause, c.extrinsic, c.block_from) for c in changes} == {(104, "NetworkRemoved", 2, None)}
    assert not [k for k in (*state.validators, *state.pending) if k[1] == GONE]
    assert not [k for k in state.edges if k[2] == GONE]


def test_without_events_the_net_changes_say_the_same_and_a_revocation_is_dropped_not_applied():
    _, changes = changes_since(recorded_before(), after(), 0.05, None)
    assert sorted(losses(changes), key=str) == sorted(LOSSES, key=str)
    assert {c.block for c in changes} == {110}


def test_a_dissolution_in_blocks_not_read_is_placed_over_the_gap():
    _, changes = changes_since(recorded_before(), after(), 0.05, window(first=50, read_from=101))
    assert losses(changes) == LOSSES
    assert {(c.block, c.cause, c.block_from) for c in changes} == {(100, "gap", 50)}


def test_a_child_set_applied_before_the_dissolution_is_replayed_then_taken_by_it():
    applied = ChainEvent(102, 0, None, "SetChildren", (t.P2,), (GONE,), (), ((t.QUARTER, t.M),))
    _, changes = changes_since(recorded_before(), after(), 0.05, window(applied, removed()))
    edges = [(c.kind, c.old, c.new, c.block, c.cause) for c in changes if c.hotkey == t.M and c.parent == t.P2]
    assert edges == [("proportion_changed", 0.5, 0.25, 102, "SetChildren"), ("edge_removed", 0.25, None, 104, "NetworkRemoved")]
    assert [c.kind for c in changes].count("subnet_dissolved") == 1


def test_no_dissolution_is_made_up_of_a_hand_made_snapshot_or_of_a_subnet_still_there():
    hand_made = replace(after(), netuids=None)
    _, changes = changes_since(recorded_before(), hand_made, 0.05, window(removed()))
    assert "subnet_dissolved" not in [c.kind for c in changes]
    lost_permits = build_snapshot(with_subnet_3(permits={**with_subnet_3().permits, GONE: (False, False)}), SCOPE)
    _, changes = changes_since(recorded_before(), lost_permits, 0.05, window())
    assert "subnet_dissolved" not in [c.kind for c in changes] and "permit_lost" in [c.kind for c in changes]
