"""The snapshot builder against hand-computed expectations, from literal chain reads."""

from __future__ import annotations

from dataclasses import replace

import pytest

from exporter.config import ScopeConfig, WatchedHotkey
from exporter.snapshot.model import ChainRead
from exporter.snapshot.builder import build_snapshot
from tests import tricky_chain as t


def chain_read(**overrides) -> ChainRead:
    stake = {(h, 1): v for h, v in t.OWN_ALPHA_1.items() if v}
    stake.update({(h, 2): v for h, v in t.OWN_ALPHA_2.items()})
    stake.update({(h, 0): v for h, v in t.ROOT.items()})
    read = ChainRead(
        block=100, block_hash="0xab", timestamp_ms=1_767_225_600_000, spec_version=393,
        tao_weight=t.TAO_WEIGHT, stake_threshold=1000 * t.RAO, min_take=0, max_take=11796, pending_cooldown=7200,
        netuids=(0, 1, 2),
        permits={0: (True, False), 1: t.PERMITS_1, 2: (True, False)},
        max_validators={0: 64, 1: 64, 2: 64},
        hotkeys={**{(1, uid): h for uid, h in enumerate(t.UIDS_1)}, (2, 0): t.V2, (2, 1): t.OWNER, (0, 0): t.P},
        watched_uids={},
        children={k: tuple(v) for k, v in t.CHILD_KEYS.items()},
        parents={k: tuple(v) for k, v in t.parent_keys().items()},
        pending={k: (tuple(links), cd) for k, (links, cd) in t.PENDING.items()},
        stake=stake,
        takes={(h, 1): v for h, v in t.TAKES_1.items() if v},
        coldkeys=t.COLD,
    )
    return replace(read, **overrides)


SCOPE = ScopeConfig(min_stake_weight=100, watch=(WatchedHotkey(t.P, "parent", expected_take=0.09),))


def by_key(snapshot):
    return {(v.hotkey, v.netuid): v for v in snapshot.validators}


def test_scope_is_permit_holders_above_min_weight_plus_watched():
    snapshot = build_snapshot(chain_read(watched_uids={(1, t.P): 0}), SCOPE)
    assert {h for h, n in by_key(snapshot) if n == 1} == t.IN_SCOPE_1
    assert {h for h, n in by_key(snapshot) if n == 2} == {t.V2}
    assert all(n != 0 for _, n in by_key(snapshot)), "root (netuid 0) validators are not in scope"


@pytest.mark.parametrize("who", [*t.CHILDREN, t.P, t.M, t.Z, t.P2])
def test_values_equal_the_chain_arithmetic(who):
    v = by_key(build_snapshot(chain_read(), SCOPE))[(who, 1)]
    want = t.EXPECTED.get(who, t.EXPECTED["child"])
    assert v.own_alpha == want["own"]
    assert v.root_tao == want["root"]
    assert v.inherited_alpha == want["inherited"]
    assert v.inherited_root_tao == want["inherited_root"]
    assert v.to_children_alpha == pytest.approx(want["to_children"], rel=1e-15, abs=1e-9)
    assert v.from_parents_alpha == pytest.approx(want["from_parents"], rel=1e-15, abs=1e-9)
    assert v.stake_weight == pytest.approx(want["stake_weight"], rel=1e-15)
    assert (v.parents, v.children) == (want["parents"], want["children"])


def test_takes_at_zero_and_at_the_maximum():
    validators = by_key(build_snapshot(chain_read(), SCOPE))
    assert validators[(t.C1, 1)].childkey_take == 0.0
    assert validators[(t.C2, 1)].childkey_take == pytest.approx(t.TAKE_MAX_RATIO)
    assert validators[(t.C4, 1)].childkey_take == 0.0  # no ChildkeyTake entry: the default 0


def test_take_never_below_the_chain_minimum():
    validators = by_key(build_snapshot(chain_read(min_take=4000), SCOPE))
    assert validators[(t.C1, 1)].childkey_take == pytest.approx(4000 / 65535)
    assert validators[(t.C3, 1)].childkey_take == pytest.approx(5000 / 65535)
    per_subnet = by_key(build_snapshot(chain_read(min_take_per_subnet={1: 6000}), SCOPE))
    assert per_subnet[(t.C3, 1)].childkey_take == pytest.approx(6000 / 65535)


def test_uid_and_permit():
    validators = by_key(build_snapshot(chain_read(), SCOPE))
    assert validators[(t.Z, 1)].uid == 9 and validators[(t.Z, 1)].permit
    assert validators[(t.V2, 2)].uid == 0


def test_edges_touching_scope_and_pending_sets():
    snapshot = build_snapshot(chain_read(), SCOPE)
    edges = {(e.parent, e.child, e.netuid): e.proportion for e in snapshot.edges}
    assert edges[(t.NP, t.Z, 1)] == t.QUARTER, "a parent without a permit still shows as an edge"
    assert edges[(t.P3, t.M, 1)] == t.MAX
    assert sum(p for (parent, _, _), p in edges.items() if parent == t.P) == t.MAX
    pending = {(p.parent, p.netuid): p for p in snapshot.pending}
    assert pending[(t.P2, 1)].children == ((t.MAX, t.M),) and pending[(t.P2, 1)].cooldown_block == 7300
    assert pending[(t.P, 1)].children == () and pending[(t.P, 1)].cooldown_block == 7400


def test_identity_carries_coldkey_and_alias():
    snapshot = build_snapshot(chain_read(), SCOPE)
    identities = {i.hotkey: i for i in snapshot.identities}
    assert identities[t.P].alias == "parent" and identities[t.P].coldkey == t.COLD[t.P]
    assert identities[t.M].alias == ""
    assert snapshot.expected_takes == {t.P: 0.09}


def test_subnet_filter():
    snapshot = build_snapshot(chain_read(), replace(SCOPE, netuids=(2,)))
    assert {n for _, n in by_key(snapshot)} == {2}


def test_removed_edge_changes_the_child_and_disappears():
    children = {k: tuple(v) for k, v in t.CHILD_KEYS.items() if k != (t.NP, 1)}
    parents = {k: tuple(v) for k, v in t.parent_keys().items() if k != (t.Z, 1)}
    snapshot = build_snapshot(chain_read(children=children, parents=parents), SCOPE)
    assert (t.Z, 1) not in by_key(snapshot), "Z has no stake left, so it drops below the minimum"
    assert all(e.child != t.Z for e in snapshot.edges)


def test_subnet_cutoff_and_contender_are_the_next_epochs_rank_boundaries():
    """With StakeThreshold at 100 alpha, netuid 1 ranks NP (1.5M, no permit now), Z (~500k), M (~720),
    the five children (~290 each), P2 (150); P and P3 give everything away. k = 3."""
    read = chain_read(max_validators={0: 64, 1: 3, 2: 64}, stake_threshold=100 * t.RAO)
    snapshot = build_snapshot(read, SCOPE)
    subnets = {s.netuid: s for s in snapshot.subnets}
    assert set(subnets) == {1, 2}, "root is not a subnet in scope"
    assert subnets[1].max_validators == 3 and subnets[1].permits == 10, "permits: the last epoch's"
    assert subnets[1].permit_cutoff_stake_weight == pytest.approx(t.EXPECTED[t.M]["stake_weight"]), "the 3rd strongest"
    assert subnets[1].top_contender_stake_weight == pytest.approx(t.EXPECTED["child"]["stake_weight"]), "the 4th"
    assert subnets[2].permit_cutoff_stake_weight is None, "k or fewer eligible: no cutoff but StakeThreshold"
    # The next epoch takes the permits of everyone but Z and M (in scope: NP is not exported).
    changes = snapshot.projected_permit_changes
    assert (t.M, 1) not in changes and (t.Z, 1) not in changes, "Z and M keep theirs"
    assert {key for key, gains in changes.items() if not gains} == {
        (h, 1) for h in (t.P, *t.CHILDREN, t.P2)} & {(v.hotkey, v.netuid) for v in snapshot.validators}
    assert not [key for key, gains in changes.items() if gains]


def test_equal_stake_weights_keep_the_higher_uids():
    """k = 5: NP, Z, M, then two of the five equal children: the epoch's stable sort drops lower uids first."""
    read = chain_read(max_validators={0: 64, 1: 5, 2: 64}, stake_threshold=100 * t.RAO)
    snapshot = build_snapshot(read, SCOPE)
    losing = {h for (h, n), gains in snapshot.projected_permit_changes.items() if n == 1 and not gains}
    assert {t.C1, t.C2, t.C3} <= losing and not {t.C4, t.C5, t.M, t.Z} & losing


def test_the_next_epoch_block_follows_the_classic_schedule():
    from exporter.snapshot.projection import next_epoch_block
    # blocks_until_next_epoch = tempo - (b + n + 1) % (tempo + 1): the epoch runs where that is 0,
    # i.e. (b + n + 1) % (tempo + 1) == tempo (the code's own comment says "== 0"; its table and code don't)
    assert next_epoch_block(100, 1, 360) == 358  # (358 + 2) % 361 == 360
    assert next_epoch_block(358, 1, 360) == 719, "an epoch at the read block already ran"
    assert next_epoch_block(357, 1, 360) == 358
    assert next_epoch_block(98, 0, 100) == 99 and next_epoch_block(0, 1, 1) == 1, "the code's table: tempo 100 netuid 0 -> 99"
    assert next_epoch_block(100, 1, 0) is None, "tempo 0: never"
    subnets = {s.netuid: s for s in build_snapshot(chain_read(block=100, tempos={1: 360, 2: 0}), SCOPE).subnets}
    assert (subnets[1].next_epoch_block, subnets[2].next_epoch_block) == (358, None)


def test_pending_effects_say_what_each_set_does_to_each_child():
    effects = {(e.parent, e.child): (e.current, e.pending) for e in build_snapshot(chain_read(), SCOPE).pending_effects}
    # P2 raises M from a half to everything; P revokes all five children.
    assert effects[(t.P2, t.M)] == (t.HALF, t.MAX)
    assert {c: effects[(t.P, c)] for c in t.CHILDREN} == {c: (t.FIFTH, 0) for c in t.CHILDREN}
    assert len(effects) == 6


def test_watched_hotkeys_say_where_they_are_registered():
    scope = ScopeConfig(watch=(WatchedHotkey(t.P, "parent"), WatchedHotkey(t.hotkey(99), "typo")))
    snapshot = build_snapshot(chain_read(watched_uids={(0, t.P): 0, (1, t.P): 0}), scope)
    assert [(k.alias, k.netuids, k.found) for k in snapshot.watched] == [("parent", (0, 1), True), ("typo", (), False)]


@pytest.mark.parametrize("own,root,tao_weight", [
    (0, 0, t.TAO_WEIGHT), (1, 1, 1), (2**64 - 1, 2**64 - 1, 2**64 - 1), (123_456_789_012, 98_765_432_109, t.TAO_WEIGHT),
])
def test_a_contender_without_childkeys_weighs_what_the_full_arithmetic_says(own, root, tao_weight):
    from exporter.snapshot.contenders import _stake_weight_fixed
    from exporter.snapshot.stake_math import inherited_stake
    read = chain_read(stake={(t.NP, 1): own, (t.NP, 0): root}, children={}, parents={}, tao_weight=tao_weight)
    full = inherited_stake(own_alpha=own, own_root=root, child_proportions=[], parents=[], tao_weight_raw=tao_weight)
    assert _stake_weight_fixed(read, t.NP, 1) == full.stake_weight_fixed


def test_a_watched_child_without_a_uid_is_found_through_its_parents():
    scope = ScopeConfig(watch=(WatchedHotkey(t.Z, "child"),))
    (key,) = build_snapshot(chain_read(), scope).watched
    assert key.netuids == () and key.found, "Z has NP as its parent on netuid 1"
