"""The checks between a read and its publication, on literal chain reads: each rule, and the gate's memory."""

from __future__ import annotations

from dataclasses import replace

import bittensor_core
import pytest

from exporter.config import ScopeConfig
from exporter.snapshot.builder import build_snapshot
from exporter.snapshot.model import ValidatorState
from exporter.snapshot.read_rules import MAX_CHILDREN, MAX_UIDS, ZERO_ACCOUNT, InvalidRead, check_read
from exporter.snapshot.snapshot_check import check_snapshot
from exporter.snapshot.validate import ReadGate, step_problem
from tests import tricky_chain as t
from tests.test_snapshot import chain_read

HASH = "0x" + "ab" * 32
SCOPE = ScopeConfig(min_stake_weight=100)


def good(**overrides):
    return chain_read(**{"block_hash": HASH, **overrides})


def children(**changes):
    links = {k: tuple(v) for k, v in t.CHILD_KEYS.items()}
    links.update(changes)
    return links


def mirrored(child_keys: dict) -> dict:
    up: dict = {}
    for (parent, netuid), links in child_keys.items():
        for proportion, child in links:
            up.setdefault((child, netuid), []).append((proportion, parent))
    return {k: tuple(v) for k, v in up.items()}


def rule_of(read) -> str:
    with pytest.raises(InvalidRead) as refused:
        check_read(read)
    return refused.value.rule


def test_the_tricky_chain_is_valid():
    check_read(good())


def test_the_zero_account_constant_is_what_a_missing_account_decodes_to():
    assert ZERO_ACCOUNT == bittensor_core.ss58_encode(bytes(32), 42) == t.hotkey(0)


def test_invalid_read_is_a_value_error_that_says_its_rule():
    error = InvalidRead("duplicate_child", "x" * 1000, held=True)
    assert isinstance(error, ValueError) and type(error).__name__ == "InvalidRead"
    assert str(error).startswith("duplicate_child: xxx") and str(error).endswith("(held back, needs confirmation)")
    assert len(error.detail) < 300, "the endpoint controls the detail: bounded"


@pytest.mark.parametrize("overrides, rule", [
    (dict(block=0), "block_number"),
    (dict(block=-5), "block_number"),
    (dict(block_hash="0xab"), "block_hash_malformed"),
    (dict(block_hash="0x" + "zz" * 32), "block_hash_malformed"),
    (dict(block_hash=None), "block_hash_malformed"),
    (dict(timestamp_ms=0), "timestamp"),
    (dict(netuids=(1, 2)), "no_root_subnet"),
    (dict(netuids=()), "no_root_subnet"),
    (dict(netuids=(0, 1, 2, 5000)), "netuid_out_of_range"),
    (dict(permits={1: (True,) * (MAX_UIDS + 1)}), "permits_too_long"),
    (dict(takes={(t.C2, 1): 65_536}), "value_out_of_range"),
    (dict(min_take=-1), "value_out_of_range"),
    (dict(stake={(t.P, 0): 21_000_001 * t.RAO}), "stake_above_supply"),
    (dict(stake={(t.P, 1): -1}), "value_out_of_range"),
])
def test_each_invariant_of_one_read(overrides, rule):
    assert rule_of(good(**overrides)) == rule
    # Beside a read that passed (the gate's last good one), only parts equal to its parts
    # are taken as checked: a broken part differs from it, so it is still refused.
    with pytest.raises(InvalidRead) as refused:
        check_read(good(**overrides), checked=good())
    assert refused.value.rule == rule


SWAPPED = ("duplicate_child", "self_child")  # what a hotkey swap leaves in a pending list, never in ChildKeys


@pytest.mark.parametrize("links, rule", [
    ([(t.FIFTH, c) for c in (*t.CHILDREN, t.M)], "too_many_children"),
    ([(1, f"child-{i}") for i in range(10_000)], "too_many_children"),
    ([(t.FIFTH, c) for c in (t.C1, t.C1, t.C2, t.C3, t.C4)], "duplicate_child"),
    ([(t.MAX, c) for c in t.CHILDREN], "proportions_exceed_one"),
    ([(t.MAX, t.C1), (1, t.C2)], "proportions_exceed_one"),
    ([(t.HALF, t.P)], "self_child"),
    ([(t.MAX + 1, t.C1)], "value_out_of_range"),
])
def test_a_child_set_the_chain_would_refuse(links, rule):
    child_keys = children(**{}) | {(t.P, 1): tuple(links)}
    assert rule_of(good(children=child_keys, parents=mirrored(child_keys))) == rule, "mirrored: the set itself is wrong"
    pending = good(pending={(1, t.P): (tuple(links), 7400)})
    if rule in SWAPPED:
        check_read(pending)  # a swap's rewrite: the chain applies it without the self entry, a duplicate collapsed
    else:
        assert rule_of(pending) == rule, "a pending set is held to the same bounds"
    for broken in (good(children=child_keys, parents=mirrored(child_keys)), *(() if rule in SWAPPED else (pending,))):
        with pytest.raises(InvalidRead) as refused:
            check_read(broken, checked=good())
        assert refused.value.rule == rule, "beside a read that passed, a changed set is checked again"


def test_five_children_summing_to_exactly_u64_max_are_fine():
    assert sum(p for p, _ in t.CHILD_KEYS[(t.P, 1)]) == t.MAX and len(t.CHILD_KEYS[(t.P, 1)]) == MAX_CHILDREN
    check_read(good())


def test_no_child_keys_on_root():
    child_keys = children() | {(t.P, 0): ((t.HALF, t.M),)}
    assert rule_of(good(children=child_keys, parents=mirrored(child_keys))) == "children_on_root"
    assert rule_of(good(pending={(0, t.P): (((t.HALF, t.M),), 7400)})) == "children_on_root"


# States real storage holds though no write path makes them (see exporter.snapshot.anomalies):
# published and flagged, never refused.
CHAIN_CAN_HOLD = {
    "ParentKeys lacks P3 -> M": dict(parents={**mirrored(t.CHILD_KEYS), (t.M, 1): ((t.HALF, t.P2),)}),
    "ChildKeys lacks P -> V2": dict(parents={**mirrored(t.CHILD_KEYS), (t.V2, 2): ((t.HALF, t.P),)}),
    "another proportion": dict(parents={**mirrored(t.CHILD_KEYS), (t.M, 1): ((t.HALF - 1, t.P2), (t.MAX, t.P3))}),
    "a parent listed twice": dict(parents={**mirrored(t.CHILD_KEYS), (t.M, 1): ((t.HALF, t.P2), (t.HALF, t.P2), (t.MAX, t.P3))}),
    "64 parents at 100 %": dict(parents={**mirrored(t.CHILD_KEYS), (t.V2, 2): tuple((t.MAX, t.hotkey(150 + i)) for i in range(64))}),
    "a take above a lowered MaxChildkeyTake": dict(takes={(t.C2, 1): 11_797}),
    "MinChildkeyTake above MaxChildkeyTake": dict(min_take=20_000),
    "a permitted uid without Keys": dict(hotkeys={k: h for k, h in good().hotkeys.items() if k != (1, 3)}),
    "a hotkey twice in Keys": dict(hotkeys={**good().hotkeys, (1, 10): t.P}),
}


@pytest.mark.parametrize("what", CHAIN_CAN_HOLD)
def test_a_state_the_chain_can_hold_is_not_refused(what):
    check_read(good(**CHAIN_CAN_HOLD[what]))
    check_read(good(**CHAIN_CAN_HOLD[what]), checked=good())


# -- the step from the last good read -----------------------------------------------


def admitted(gate: ReadGate, read) -> bool:
    try:
        gate.admit(read, SCOPE)
    except InvalidRead:
        return False
    return True


def test_blocks_never_go_back_and_a_finalized_block_never_changes():
    gate = ReadGate()
    gate.admit(good(block=100), SCOPE)
    for read, rule in ((good(block=99), "block_went_back"),
                       (good(block=100, block_hash="0x" + "cd" * 32), "block_hash_changed"),
                       (good(block=101, timestamp_ms=1), "timestamp_went_back")):
        with pytest.raises(InvalidRead) as refused:
            gate.admit(read, SCOPE)
        assert refused.value.rule == rule and not refused.value.held
    with pytest.raises(InvalidRead, match="block_went_back"):
        gate.check_head(99, HASH)
    gate.admit(good(block=100), SCOPE)  # the same block again is fine
    gate.admit(good(block=101), SCOPE)


def test_small_changes_pass_half_of_anything_gone_is_held_back():
    base = good()
    without_p = {k: v for k, v in t.CHILD_KEYS.items() if k != (t.P, 1)}  # 5 of 8 edges
    assert step_problem(base, good(children={k: tuple(v) for k, v in without_p.items()},
                                   parents=mirrored(without_p)), SCOPE)[0] == "edges_dropped"
    assert step_problem(base, good(permits={1: t.PERMITS_1[:3]}), SCOPE)[0] == "validators_dropped"
    assert step_problem(base, good(netuids=(0,)), SCOPE) is None, "3 subnets are below the floor of the rule"
    stake = {k: v for k, v in base.stake.items() if k != (t.NP, 1)}  # Z's parent held 99 % of the stake read
    assert step_problem(base, good(stake=stake), SCOPE)[0] == "stake_dropped"
    one_edge_less = {k: v for k, v in t.CHILD_KEYS.items() if k != (t.P3, 1)}
    assert step_problem(base, good(children={k: tuple(v) for k, v in one_edge_less.items()},
                                   parents=mirrored(one_edge_less)), SCOPE) is None


def test_stake_that_is_no_longer_read_is_no_loss():
    """NP deregistering (and so no longer Z's parent) takes its stake out of the read: not a drop."""
    base = good()
    children = {k: tuple(v) for k, v in t.CHILD_KEYS.items() if k != (t.NP, 1)}
    no_np = good(hotkeys={k: h for k, h in base.hotkeys.items() if h != t.NP},
                 children=children, parents=mirrored({k: list(v) for k, v in children.items()}),
                 stake={k: v for k, v in base.stake.items() if k[0] != t.NP})
    assert step_problem(base, no_np, SCOPE) is None


def test_a_held_back_read_is_confirmed_by_the_next_agreeing_read():
    gate = ReadGate()
    assert admitted(gate, good(block=100))
    stake = {k: v for k, v in good().stake.items() if k != (t.NP, 1)}
    with pytest.raises(InvalidRead) as held:
        gate.admit(good(block=101, stake=stake), SCOPE)
    assert held.value.held and held.value.rule == "stake_dropped"
    assert gate.last_good.block == 100, "the last good read is still the one to compare with"
    assert admitted(gate, good(block=102, stake=stake)), "confirmed"
    assert gate.last_good.block == 102 and gate.held is None


def test_a_held_back_read_is_superseded_by_a_plausible_one():
    gate = ReadGate()
    assert admitted(gate, good(block=100))
    assert not admitted(gate, good(block=101, permits={1: ()}))
    assert admitted(gate, good(block=102)), "the glitch is gone"
    assert gate.held is None
    assert not admitted(gate, good(block=103, permits={1: ()})), "held again: the last good read is 102's"


def test_a_held_back_read_is_not_confirmed_by_a_different_implausible_one():
    gate = ReadGate()
    assert admitted(gate, good(block=100))
    stake = {k: v for k, v in good().stake.items() if k != (t.NP, 1)}
    assert not admitted(gate, good(block=101, stake=stake))
    assert not admitted(gate, good(block=102, permits={1: ()})), "another story: held instead"
    assert gate.held.block == 102
    assert admitted(gate, good(block=103, permits={1: ()}))


T0 = 1_767_225_600_000  # chain_read's Timestamp.Now (ms)


def clocked(seconds_after_t0: float) -> ReadGate:
    """A gate whose clock reads ``seconds_after_t0`` after the literal reads' timestamp."""
    return ReadGate(clock=lambda: T0 / 1000 + seconds_after_t0)


def test_a_head_further_ahead_than_the_clock_allows_is_refused_before_it_is_read():
    gate = clocked(60)
    gate.admit(good(block=100), SCOPE)
    # 60 s of clock + the 600 s margin: 55 slots, + 1 + 5 of slack: 61 blocks.
    gate.check_head(161, HASH)
    with pytest.raises(InvalidRead) as refused:
        gate.check_head(162, HASH)
    assert refused.value.rule == "block_ahead_of_clock" and not refused.value.held
    with pytest.raises(InvalidRead, match="block_ahead_of_clock"):
        gate.check_head(1100, HASH)
    for number in (2**32 - 1, 2**40):
        with pytest.raises(InvalidRead, match="block_number"):
            ReadGate().check_head(number, HASH)
    ReadGate().check_head(2**32 - 2, HASH)  # no read yet: only the chain's own bound


def test_a_timestamp_beyond_the_clock_is_refused_and_never_the_reference():
    gate = clocked(0)
    gate.admit(good(block=100), SCOPE)
    for stamp in (T0 + 600_001 + 12_000, 2**64 - 1):
        with pytest.raises(InvalidRead) as refused:
            gate.admit(good(block=101, timestamp_ms=stamp), SCOPE)
        assert refused.value.rule == "timestamp_ahead_of_clock"
    assert gate.last_good.block == 100 and gate.held is None
    gate.admit(good(block=101, timestamp_ms=T0 + 600_000), SCOPE)  # within the margin


def test_no_more_blocks_than_the_timestamps_leave_slots_for():
    gate = clocked(3600)
    gate.admit(good(block=100), SCOPE)
    # 120 s between the stamps: 10 slots, + 1 + 5 of slack.
    gate.admit(good(block=116, timestamp_ms=T0 + 120_000), SCOPE)
    with pytest.raises(InvalidRead) as refused:
        gate.admit(good(block=133, timestamp_ms=T0 + 240_000), SCOPE)
    assert refused.value.rule == "block_ahead_of_timestamps"
    assert gate.last_good.block == 116, "the refused read is not the reference"
    gate.admit(good(block=126, timestamp_ms=T0 + 240_000), SCOPE)
    assert gate.last_good.block == 126


def test_a_held_or_refused_head_far_ahead_leaves_honest_reads_publishable():
    """The forged head is never the reference, so the honest reads after it are not 'going back'."""
    gate = clocked(30)
    gate.admit(good(block=100), SCOPE)
    with pytest.raises(InvalidRead):
        gate.check_head(1100, HASH)
    with pytest.raises(InvalidRead):
        gate.admit(good(block=1100, timestamp_ms=T0 + 12_000), SCOPE)
    gate.check_head(101, HASH)
    gate.admit(good(block=101, timestamp_ms=T0 + 12_000), SCOPE)


def test_an_invalid_read_is_never_held_and_never_becomes_the_baseline():
    gate = ReadGate()
    assert admitted(gate, good(block=100))
    assert not admitted(gate, good(block=101, stake={(t.P, 0): 21_000_001 * t.RAO}))
    assert gate.held is None and gate.last_good.block == 100


# -- the snapshot ---------------------------------------------------------------------


def test_the_snapshot_of_a_valid_read_passes():
    check_snapshot(build_snapshot(good(), SCOPE))


@pytest.mark.parametrize("what", CHAIN_CAN_HOLD)
def test_the_snapshot_of_a_state_the_chain_can_hold_passes(what):
    check_snapshot(build_snapshot(good(**CHAIN_CAN_HOLD[what]), ScopeConfig(min_stake_weight=0)))


@pytest.mark.parametrize("change, rule", [
    (lambda s: replace(s, validators=s.validators + s.validators[:1]), "duplicate_series"),
    (lambda s: replace(s, edges=s.edges + s.edges[-1:]), "duplicate_series"),
    (lambda s: replace(s, validators=(replace(s.validators[0], to_children_alpha=5e12),)), "gives_more_than_it_owns"),
    (lambda s: replace(s, validators=(replace(s.validators[0], stake_weight=float("nan")),)), "impossible_number"),
    (lambda s: replace(s, validators=(replace(s.validators[0], inherited_alpha=-1),)), "impossible_number"),
    (lambda s: replace(s, validators=(replace(s.validators[0], childkey_take=1.5),)), "impossible_number"),
    (lambda s: replace(s, validators=(replace(s.validators[0], stored_childkey_take=0.2, childkey_take=0.1),)), "impossible_number"),
    (lambda s: replace(s, validators=(replace(s.validators[0], children=25),)), "too_many_children"),
    # what only history sees (a permit holder outside the netuid filter or below min_stake_weight)
    (lambda s: replace(s, tracked=s.tracked + (replace(s.tracked[0], netuid=99, inherited_alpha=-1),)), "impossible_number"),
    (lambda s: replace(s, tracked=s.tracked + s.tracked[:1]), "duplicate_series"),
])
def test_a_snapshot_with_duplicates_or_impossible_numbers_is_refused(change, rule):
    snapshot = change(build_snapshot(good(), SCOPE))
    assert isinstance(snapshot.validators[0], ValidatorState)
    with pytest.raises(InvalidRead) as refused:
        check_snapshot(snapshot)
    assert refused.value.rule == rule


def test_after_a_restart_a_head_behind_what_history_recorded_is_refused_as_going_back():
    """A lagging endpoint (a node still syncing) after a restart would undo recorded changes."""
    recorded = (100, T0)
    gate = clocked(60)
    with pytest.raises(InvalidRead) as refused:
        gate.check_head(99, HASH, recorded)
    assert refused.value.rule == "block_went_back" and not refused.value.held
    assert "behind block 100, the last block history recorded" in str(refused.value)
    gate.check_head(100, HASH, recorded)
    gate.check_head(101, HASH, recorded)
    gate.check_head(99, HASH, (None, None))  # an empty history: no reference
    gate.admit(good(block=101), SCOPE)
    gate.check_head(101, HASH, recorded)  # from the first admitted read on, it is the reference
