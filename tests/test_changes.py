"""Change detection as a pure function of the recorded state and a new snapshot."""

from __future__ import annotations

from exporter.snapshot.changes import HistoryState, state_of
from exporter.config import ScopeConfig
from exporter.snapshot.builder import build_snapshot
from tests import tricky_chain as t
from tests.test_snapshot import chain_read

SCOPE = ScopeConfig(min_stake_weight=100)


def kinds(events) -> list[tuple[str, str]]:
    return sorted((e.kind, e.hotkey) for e in events)


def recorded():
    state, events = state_of(build_snapshot(chain_read(), SCOPE), HistoryState.empty(), 0.05)
    assert events == [], "the first refresh only records"
    return state


def test_edge_added_and_permit_gained():
    children = {k: tuple(v) for k, v in t.CHILD_KEYS.items()}
    children[(t.P3, 1)] = ((t.HALF, t.M), (t.HALF, t.C1))
    permits = {0: (True, False), 1: t.PERMITS_1[:-1] + (True,), 2: (True, False)}
    snapshot = build_snapshot(chain_read(children=children, permits=permits), ScopeConfig(min_stake_weight=0))
    _, events = state_of(snapshot, recorded(), 0.05)
    assert ("edge_added", t.C1) in kinds(events)
    assert ("proportion_changed", t.M) in kinds(events)
    added = next(e for e in events if e.kind == "edge_added")
    assert (added.parent, added.child, added.new) == (t.P3, t.C1, 0.5)


def test_nothing_changed_means_no_events():
    state = recorded()
    again, events = state_of(build_snapshot(chain_read(block=2), SCOPE), state, 0.05)
    assert events == [] and again == state


def test_edge_of_a_child_leaving_scope_is_not_a_removal():
    state = recorded()
    stake = dict(chain_read().stake)
    stake[(t.NP, 1)] = 1  # Z's only source of stake dries up: Z leaves scope, the edge stays
    _, events = state_of(build_snapshot(chain_read(stake=stake), SCOPE), state, 0.05)
    assert "edge_removed" not in {e.kind for e in events}


def test_a_new_permit_holder_is_recorded_even_when_nobody_watches_it():
    """NP holds no permit, so history did not track it; the permit it gains is still an event."""
    permits = {0: (True, False), 1: (True,) * 11, 2: (True, False)}
    _, events = state_of(build_snapshot(chain_read(permits=permits), SCOPE), recorded(), 0.05)
    gained = [e for e in events if e.kind == "permit_gained"]
    assert [(e.hotkey, e.netuid, e.old, e.new) for e in gained] == [(t.NP, 1, False, True)]


def test_a_permit_holder_that_loses_its_permit_is_recorded_once():
    state = recorded()
    permits = {0: (True, False), 1: t.PERMITS_1[:6] + (False,) + t.PERMITS_1[7:], 2: (True, False)}
    state, events = state_of(build_snapshot(chain_read(permits=permits, block=101), SCOPE), state, 0.05)
    assert [(e.kind, e.hotkey, e.netuid) for e in events if e.kind.startswith("permit")] == [("permit_lost", t.M, 1)]
    _, again = state_of(build_snapshot(chain_read(permits=permits, block=102), SCOPE), state, 0.05)
    assert again == []


def test_falling_below_min_stake_weight_hides_no_change():
    """M keeps its permit while its stake weight falls below min_stake_weight: the fall and
    a take change made while it is out of the exported scope are both recorded."""
    scope = ScopeConfig(min_stake_weight=300)  # M's stake weight is about 350 alpha
    state, events = state_of(build_snapshot(chain_read(), scope), HistoryState.empty(), 0.05)
    assert events == []
    children = {k: tuple(v) for k, v in t.CHILD_KEYS.items() if k != (t.P3, 1)}  # P3 stops giving M its stake
    parents = {k: tuple((q, p) for q, p in v if p != t.P3) for k, v in t.parent_keys().items()}
    out = build_snapshot(chain_read(children=children, parents=parents, block=101), scope)
    assert (t.M, 1) not in {(v.hotkey, v.netuid) for v in out.validators}, "M left the exported scope"
    state, events = state_of(out, state, 0.05)
    assert ("stake_weight_moved", t.M) in kinds(events) and ("edge_removed", t.M) in kinds(events)
    takes = {**{(h, 1): v for h, v in t.TAKES_1.items() if v}, (t.M, 1): 6000}
    _, events = state_of(build_snapshot(chain_read(children=children, parents=parents, takes=takes, block=102), scope), state, 0.05)
    assert [(e.kind, e.hotkey, e.old, e.new) for e in events] == [("take_changed", t.M, 3000 / 65535, 6000 / 65535)]


def test_the_netuid_filter_hides_no_change():
    scope = ScopeConfig(min_stake_weight=100, netuids=(2,))
    state, _ = state_of(build_snapshot(chain_read(), scope), HistoryState.empty(), 0.05)
    takes = {**{(h, 1): v for h, v in t.TAKES_1.items() if v}, (t.C1, 1): 100}
    snapshot = build_snapshot(chain_read(takes=takes, block=101), scope)
    assert all(v.netuid == 2 for v in snapshot.validators)
    _, events = state_of(snapshot, state, 0.05)
    assert [(e.kind, e.hotkey, e.netuid) for e in events] == [("take_changed", t.C1, 1)]
