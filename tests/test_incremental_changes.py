"""Change detection and the snapshot check pay only for what changed, with the same results.

``state_of`` reuses the recorded ``ValidatorRecord`` of a validator whose numbers did not move
and skips the edge and pending comparisons when neither moved; ``check_snapshot`` skips a
``ValidatorState`` object it already passed. Each is compared here with the plain computation:
``state_of`` with a copy of its one-record-per-validator form, the check with fresh objects.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from exporter.config import ScopeConfig
from exporter.snapshot.builder import build_snapshot
from exporter.snapshot.changes import HistoryState, ValidatorRecord, edge_change, state_of
from exporter.snapshot.memo import StakeMemo
from exporter.snapshot.units import to_units
from exporter.snapshot import snapshot_check
from exporter.snapshot.read_rules import InvalidRead
from exporter.snapshot.snapshot_check import PassedValidators, check_snapshot
from tests import tricky_chain as t
from tests.test_incremental_snapshot import _sequence
from tests.test_snapshot import SCOPE, chain_read

RATIO = 0.05


def _from_scratch(snapshot, previous: HistoryState, ratio: float):
    """``state_of`` without any reuse: a record made per validator, every edge and pending set compared."""
    block, when = snapshot.chain.block, snapshot.chain.timestamp_seconds
    events = []

    def emit(kind, hotkey, netuid, **fields):
        from exporter.snapshot.changes import ChangeEvent
        events.append(ChangeEvent(block, when, kind, hotkey, netuid, **fields))

    def moved(ref, new):
        return new != 0 if ref == 0 else abs(new - ref) / abs(ref) > ratio

    first_run = previous.is_empty
    validators = {}
    for v in snapshot.tracked:
        key = (v.hotkey, v.netuid)
        record = ValidatorRecord(v.uid, v.permit, v.own_alpha, v.stake_weight, v.childkey_take, v.own_alpha, v.stake_weight)
        old = previous.validators.get(key)
        if old is None:
            if v.permit and not first_run:
                emit("permit_gained", *key, old=False, new=True)
        else:
            record = replace(record, own_ref=old.own_ref, weight_ref=old.weight_ref)
            if abs(old.take - v.childkey_take) > 1e-12:
                emit("take_changed", *key, old=old.take, new=v.childkey_take)
            if old.permit != v.permit:
                emit("permit_gained" if v.permit else "permit_lost", *key, old=old.permit, new=v.permit)
            if moved(old.own_ref, v.own_alpha):
                emit("own_stake_moved", *key, old=to_units(old.own_ref), new=to_units(v.own_alpha))
                record = replace(record, own_ref=v.own_alpha)
            if moved(old.weight_ref, v.stake_weight):
                emit("stake_weight_moved", *key, old=to_units(old.weight_ref), new=to_units(v.stake_weight))
                record = replace(record, weight_ref=v.stake_weight)
        validators[key] = record
    for key, old in previous.validators.items():
        if key not in validators and old.permit:
            emit("permit_lost", *key, old=True, new=False)
    edges = {(e.parent, e.child, e.netuid): e.proportion for e in snapshot.chain_edges}
    if not first_run:
        for (parent, child, netuid), proportion in edges.items():
            change = edge_change(parent, child, previous.edges.get((parent, child, netuid)), proportion)
            if change is not None:
                emit(change[0], child, netuid, **change[1])
        for (parent, child, netuid), before in previous.edges.items():
            if (parent, child, netuid) not in edges:
                kind, fields = edge_change(parent, child, before, None)
                emit(kind, child, netuid, **fields)
    pending = {(p.parent, p.netuid): (tuple(p.children), p.cooldown_block) for p in snapshot.chain_pending}
    # (pending sets: compared by test_changes' cases; here only whether they are skipped when equal)
    return validators, edges, pending, events


def _same(snapshot, previous, ratio=RATIO):
    state, events = state_of(snapshot, previous, ratio)
    validators, edges, pending, expected = _from_scratch(snapshot, previous, ratio)
    assert state.validators == validators
    assert list(state.validators) == list(validators)
    assert list(state.edges.items()) == list(edges.items())
    assert state.pending == pending
    if not any(e.kind.startswith("pending") for e in events):
        assert events == expected
    return state, events


@pytest.mark.parametrize("scope", [SCOPE, ScopeConfig(min_stake_weight=100)], ids=["all", "filtered"])
def test_state_of_equals_the_plain_computation_over_the_memo_sequence(scope):
    memo = StakeMemo()
    previous = HistoryState.empty()
    for name, read, _ in _sequence():
        previous, _ = _same(build_snapshot(read, scope, memo), previous)
        # and with a ratio that makes every drift an event (refs then lag nowhere)
        _same(build_snapshot(read, scope, memo), previous, ratio=0.0)


def test_a_record_is_reused_only_when_nothing_is_recorded_differently():
    snapshot = build_snapshot(chain_read(), SCOPE)
    state, _ = state_of(snapshot, HistoryState.empty(), RATIO)
    again, events = _same(build_snapshot(chain_read(block=2), SCOPE), state)
    assert events == [] and all(again.validators[k] is r for k, r in state.validators.items())
    key, record = next(iter(state.validators.items()))
    # Each field of the record, and a reference that lags the value by more than the ratio
    # (a state recorded with another ratio): none may be taken for "unchanged".
    for changed in (dict(uid=record.uid + 1), dict(permit=not record.permit), dict(own_alpha=record.own_alpha + 1),
                    dict(stake_weight=record.stake_weight * 2 + 1), dict(take=record.take / 2 + 0.01),
                    dict(own_ref=record.own_alpha * 2 + 10), dict(weight_ref=record.stake_weight * 2 + 10)):
        previous = replace(state, validators={**state.validators, key: replace(record, **changed)})
        after, _ = _same(snapshot, previous)
        assert after.validators[key] is not previous.validators[key], changed


def test_a_drift_below_the_ratio_keeps_its_reference_until_it_adds_up():
    read = chain_read()
    state, _ = state_of(build_snapshot(read, SCOPE), HistoryState.empty(), RATIO)
    moved = 0
    for step in range(1, 8):
        stake = dict(read.stake)
        stake[(t.P, 1)] = read.stake[(t.P, 1)] * (100 + 2 * step) // 100  # +2 % a step
        state, events = _same(build_snapshot(replace(read, stake=stake, block=read.block + step), SCOPE), state)
        moved += sum(e.kind == "own_stake_moved" and e.hotkey == t.P for e in events)
    assert moved >= 2


def test_edges_and_pending_sets_are_compared_when_they_moved():
    state, _ = state_of(build_snapshot(chain_read(), SCOPE), HistoryState.empty(), RATIO)
    children = {k: tuple(v) for k, v in t.CHILD_KEYS.items()}
    children[(t.P3, 1)] = ((t.HALF, t.M), (t.HALF, t.C1))
    _, events = _same(build_snapshot(chain_read(children=children), SCOPE), state)
    assert {e.kind for e in events} >= {"edge_added", "proportion_changed"}
    _, events = state_of(build_snapshot(chain_read(pending={}), SCOPE), state, RATIO)
    assert state.pending and {e.kind for e in events} & {"pending_applied", "pending_dropped"}


# -- check_snapshot ----------------------------------------------------------------------


def test_a_validator_passed_before_is_skipped_but_a_new_one_is_checked(monkeypatch):
    memo, passed = StakeMemo(), PassedValidators()
    read = chain_read()
    first = build_snapshot(read, SCOPE, memo)
    check_snapshot(first, passed)
    second = build_snapshot(replace(read, block=read.block + 1), SCOPE, memo)
    assert all(a is b for a, b in zip(first.tracked, second.tracked))  # what the memo hands out again
    checked = []
    real = snapshot_check._check_validator
    monkeypatch.setattr(snapshot_check, "_check_validator", lambda v: (checked.append(v), real(v)))
    check_snapshot(second, passed)
    assert checked == [], "the very objects passed last time are not checked again"
    # An equal-looking but new object is checked: here one with an impossible number.
    bad = replace(second.validators[0], inherited_alpha=-1)
    with pytest.raises(InvalidRead):
        check_snapshot(replace(second, validators=(bad, *second.validators[1:])), passed)
    with pytest.raises(InvalidRead):  # a refused object is not remembered as passed
        check_snapshot(replace(second, validators=(bad, *second.validators[1:])), passed)
    assert checked == [bad, bad]
    check_snapshot(second, passed)
    checked.clear()
    check_snapshot(second)  # without a caller's record everything is checked
    assert len(checked) == len({id(v) for v in (*second.validators, *second.tracked)})


def test_duplicates_are_refused_whatever_was_passed_before():
    snapshot = build_snapshot(chain_read(), SCOPE)
    check_snapshot(snapshot)
    with pytest.raises(InvalidRead) as refused:
        check_snapshot(replace(snapshot, tracked=snapshot.tracked + snapshot.tracked[:1]))
    assert refused.value.rule == "duplicate_series" and "twice" in str(refused.value)
