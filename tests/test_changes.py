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
