"""The epoch after next with the pending child sets due before the next epoch applied: literal cases."""

from __future__ import annotations

import hashlib

from exporter.config import ScopeConfig, WatchedHotkey
from exporter.serving.exposition import render_snapshot
from exporter.snapshot.after_pending import CUTS_IT, LIFTS_CONTENDER, RAISES_IT, apply_child_sets, account_bytes, due_sets
from exporter.snapshot.builder import build_snapshot
from tests import tricky_chain as t
from tests.harness import parse_exposition, series
from tests.test_snapshot import chain_read

# k = 3 and StakeThreshold 100 alpha on netuid 1: the next epoch ranks NP (1.5M), Z (~500k), M (~720);
# the five children (~290 each), P2 (150); P and P3 give everything away. At block 7350 with tempo 360
# netuid 1's next epoch is 7578 ((7578 + 2) % 361 == 360), the one after 7939. Both pending sets
# (P2 gives M everything, cooldown 7300; P revokes its children, cooldown 7400) apply right after 7578.
E1, E2 = 7578, 7939
SCOPE = ScopeConfig(min_stake_weight=100, watch=(WatchedHotkey(t.M, "M"),))


def read_at(**overrides):
    base = dict(block=7350, tempos={1: 360, 2: 360}, max_validators={0: 64, 1: 3, 2: 64}, stake_threshold=100 * t.RAO)
    return chain_read(**{**base, **overrides})


def test_a_revocation_lifts_its_parent_past_a_watched_validator_at_the_epoch_after_next():
    snapshot = build_snapshot(read_at(), SCOPE)
    after = snapshot.after_pending[1]
    assert (after.apply_block, after.epoch_block, after.applied) == (E1, E2, 2)
    # P takes back its 1,000 alpha (+ 0.2 x 2,000 root): 1,400 > M's 720 + 150 from P2.
    assert {uid: (c.permit, c.parent, c.reason) for uid, c in after.changes.items()} == {
        0: (True, t.P, RAISES_IT), 6: (False, t.P, LIFTS_CONTENDER)}
    assert set(snapshot.permit_changes_after_pending) == {(t.M, 1)}, "P is below min_stake_weight now: not exported"
    samples = parse_exposition(render_snapshot(snapshot).decode())
    assert series(samples, "bittensor_validator_projected_permit_after_pending", hotkey=t.M, netuid=1,
                  parent_hotkey=t.P, reason=LIFTS_CONTENDER) == 0
    assert series(samples, "bittensor_subnet_epoch_after_next_block", netuid=1) == E2
    assert not [k for k in samples if k[0] == "bittensor_subnet_epoch_after_next_block" and dict(k[1])["netuid"] == "2"]


def test_a_set_cooling_down_at_the_next_epoch_block_does_not_count_at_the_epoch_after():
    pending = {(1, t.P2): (((t.MAX, t.M),), 7300), (1, t.P): ((), E1)}  # cooldown == E1: applied after E2
    snapshot = build_snapshot(read_at(pending=pending), SCOPE)
    after = snapshot.after_pending[1]
    assert after.applied == 1 and not after.changes, "P2's set only strengthens M, who keeps its permit"
    assert not snapshot.permit_changes_after_pending
    assert b"bittensor_subnet_epoch_after_next_block{" not in render_snapshot(snapshot), "sparse: nothing changes"


def test_a_parent_cutting_its_child_is_the_reason():
    pending = {(1, t.P3): ((), 7000)}  # P3 revokes M: M keeps 220 alpha, P3 takes back 500 (+ 20)
    snapshot = build_snapshot(read_at(pending=pending), SCOPE)
    change = snapshot.permit_changes_after_pending[(t.M, 1)]
    assert (change.permit, change.parent, change.reason) == (False, t.P3, CUTS_IT)


def test_no_pending_set_due_and_tempo_zero_give_nothing():
    assert not build_snapshot(read_at(pending={(1, t.P3): ((), E1 + 5)}), SCOPE).after_pending
    assert not build_snapshot(read_at(tempos={1: 0, 2: 0}), SCOPE).after_pending


def test_sets_apply_in_storage_key_order_and_a_child_that_is_a_parent_is_refused():
    order = lambda h: hashlib.blake2b(account_bytes(h), digest_size=16).digest() + account_bytes(h)
    pending = {(1, h): ((), 0) for h in (t.P, t.P2, t.P3, t.NP)}
    assert [p for p, _ in due_sets(pending, 1, 10)] == sorted((t.P, t.P2, t.P3, t.NP), key=order)
    children = {t.P2: ((t.HALF, t.M),)}
    parents = {t.M: ((t.HALF, t.P2),)}
    # M would make its own parent P2 its child: refused silently; Z's set goes through.
    kids, pars, applied = apply_child_sets(
        lambda h: children.get(h, ()), lambda h: parents.get(h, ()),
        [(t.M, ((t.QUARTER, t.P2),)), (t.Z, ((t.QUARTER, t.C1), (t.HALF, t.C1), (1, t.Z)))])
    assert [p for p, _, _ in applied] == [t.Z]
    assert kids == {t.Z: ((t.HALF, t.C1),)}, "the last duplicate wins; a parent is never its own child"
    assert pars == {t.C1: ((t.HALF, t.Z),), t.Z: ()}
    over = apply_child_sets(lambda h: (), lambda h: (), [(t.Z, ((t.MAX, t.C1), (1, t.C2)))])
    assert over[2] == [], "proportions past u64::MAX: refused"
