"""The simulated node's epochs: validator permits and pending child sets by the chain's rule.

Every expectation is worked out by hand from the rule (see ``simnode/epoch.py``).
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from bittensor._transport.codec import ss58_decode

from simnode import ChainState, advance_to, block_step, epoch_permits, next_epoch_block
from simnode.epoch import is_epoch_block, select_permits, stake_weights
from simnode.scenarios import TEMPO, U64_MAX, deterministic_hotkey, demo
from tests.oracle import expected

RAO = 10**9
NET = 1
HK = [deterministic_hotkey(i, "epoch") for i in range(8)]
P, C, X, C2, C3 = HK[0], HK[1], HK[2], HK[3], HK[4]


def chain(stakes, *, k=64, threshold=0, owner=None, tempo=10, root=(), tao_weight=0, permits=None) -> ChainState:
    """Subnet NET with uid i -> HK[i] holding ``stakes[i]`` rao (None: no hotkey at that uid); block 1."""
    state = ChainState()
    state.set("NetworksAdded", [NET], True)
    state.set("Tempo", [NET], tempo)
    state.set("SubnetworkN", [NET], len(stakes))
    state.set("MaxAllowedValidators", [NET], k)
    state.set("StakeThreshold", [], threshold)
    state.set("TaoWeight", [], tao_weight)
    for uid, stake in enumerate(stakes):
        if stake is not None:
            state.set("Keys", [NET, uid], HK[uid])
            state.set("Uids", [NET, HK[uid]], uid)
            state.set("TotalHotkeyAlpha", [HK[uid], NET], stake)
    for uid, stake in enumerate(root):
        state.set("TotalHotkeyAlpha", [HK[uid], 0], stake)
    if owner is not None:
        state.set("SubnetOwnerHotkey", [NET], owner if isinstance(owner, str) else HK[owner])
    if permits is not None:
        state.set("ValidatorPermit", [NET], permits)
    state.commit_block()
    return state


def at(state: ChainState, number: int, item: str, params=()):
    """A committed block's decoded value (None when absent)."""
    raw = state.block(number).storage.get(state.key(item, params))
    rt = state.runtime
    return None if raw is None else rt.decode(rt.storage_entry("SubtensorModule", item).value_type, raw)


# -- schedule ------------------------------------------------------------------------


def test_the_classic_schedule():
    # The chain's own table (blocks_until_next_epoch): tempo, netuid -> first epoch block.
    for tempo, netuid, first in [(1, 0, 0), (1, 1, 1), (2, 0, 1), (2, 1, 0), (100, 0, 99), (100, 1, 98)]:
        assert next_epoch_block(-1, netuid, tempo) == first, (tempo, netuid)
        assert is_epoch_block(first, netuid, tempo)
    assert next_epoch_block(100, 1, 360) == 358 and is_epoch_block(358, 1, 360)  # (358 + 2) % 361 == 360
    assert next_epoch_block(358, 1, 360) == 719, "an epoch at the given block itself is not the next one"
    assert next_epoch_block(357, 1, 360) == 358
    assert [b for b in range(40) if is_epoch_block(b, NET, 10)] == [8, 19, 30]
    assert next_epoch_block(100, 1, 0) is None and not any(is_epoch_block(b, 1, 0) for b in range(50))


def test_tempo_zero_never_runs_an_epoch_nor_applies_child_sets():
    state = chain([5 * RAO, 10 * RAO], k=1, tempo=0, permits=[True, False])
    state.set("PendingChildKeys", [NET, P], ([(U64_MAX, C)], 0))
    assert advance_to(state, 60) == {}
    assert at(state, 60, "ValidatorPermit", [NET]) == [True, False], "the permits were never recomputed"
    assert at(state, 60, "PendingChildKeys", [NET, P]) == ([(U64_MAX, C)], 0)
    assert at(state, 60, "ChildKeys", [P, NET]) is None


# -- the epoch's permits ---------------------------------------------------------------


def test_top_k_by_stake_weight_and_equal_weights_keep_the_higher_uid():
    state = chain([10 * RAO, 30 * RAO, 20 * RAO, 40 * RAO], k=2)
    assert epoch_permits(state, NET) == [False, True, False, True]
    # Equal shares: the stable ascending sort drops the lower uid first.
    assert epoch_permits(chain([10 * RAO] * 3, k=2), NET) == [False, True, True]
    assert epoch_permits(chain([7 * RAO, 10 * RAO, 10 * RAO, 10 * RAO], k=2), NET) == [False, False, True, True]


def test_fewer_non_zero_uids_than_k_all_get_one():
    assert epoch_permits(chain([0, 5 * RAO, 0, 1 * RAO], k=3), NET) == [False, True, False, True]
    assert epoch_permits(chain([0, 5 * RAO], k=3), NET) == [False, True], "fewer uids than k"
    assert epoch_permits(chain([0, 0, 0], k=2), NET) == [False, False, False], "no stake at all"


def test_a_uid_without_a_hotkey_weighs_nothing():
    state = chain([None, 5 * RAO, 3 * RAO], k=1)
    assert stake_weights(state, NET) == [0, 5 * RAO, 3 * RAO]
    assert epoch_permits(state, NET) == [False, True, False]


def test_the_threshold_compares_the_floor_of_the_stake_weight():
    # TaoWeight 2^63 is exactly 1/2 once truncated to 32 fractional bits: floor(2^63 * 2^32 / (2^64 - 1)) = 2^31.
    below = 1000 * RAO - 1
    state = chain([below, below, below], k=3, threshold=1000 * RAO, root=[2, 1, 3], tao_weight=2**63)
    assert stake_weights(state, NET) == [1000 * RAO, 1000 * RAO - Fraction(1, 2), 1000 * RAO + Fraction(1, 2)]
    # uid 1: 999,999,999,999.5 rao, whose floor is below 1,000 alpha.
    assert epoch_permits(state, NET) == [True, False, True]


def test_the_owner_below_the_threshold_keeps_a_permit_and_competes_with_its_weight():
    threshold = 1000 * RAO
    # k = 1: uid 1 is strongest; the owner (uid 0, 5 alpha) is outside the top 1 and gets an extra permit: k + 1.
    state = chain([5 * RAO, 2000 * RAO, 1500 * RAO], k=1, threshold=threshold, owner=0)
    assert epoch_permits(state, NET) == [True, True, False]
    # Its weight is not filtered: 800 alpha against a miner's nothing, it ranks in the top 2 by itself.
    state = chain([2000 * RAO, 0, 800 * RAO], k=2, threshold=threshold, owner=2)
    assert epoch_permits(state, NET) == [True, False, True]
    # Everyone else is below the threshold: only the owner has a non-zero share.
    state = chain([5000 * RAO, 2000 * RAO, 1500 * RAO], k=2, threshold=10_000 * RAO, owner=0)
    assert epoch_permits(state, NET) == [True, False, False]


def test_an_owner_hotkey_that_is_not_registered_exempts_nobody():
    state = chain([5 * RAO, 2000 * RAO, 1500 * RAO], k=1, threshold=1000 * RAO, owner=HK[7])
    assert epoch_permits(state, NET) == [False, True, False]


def test_weights_closer_than_the_share_resolution_tie_and_the_higher_uid_wins():
    big = 10**18  # 1e9 alpha each: the sum is ~3e18 rao, so one I32F32 share step is ~0.7 alpha
    close, far = big + RAO // 10, big + 10 * RAO
    total = 3 * big + RAO // 10
    assert close * 2**32 // total == big * 2**32 // total, "0.1 alpha more is the same share"
    assert epoch_permits(chain([close, big, big], k=2), NET) == [False, True, True]
    assert epoch_permits(chain([far, big, big], k=2), NET) == [True, False, True], "10 alpha more is not"


def test_stake_weights_go_through_children_with_truncated_proportions():
    state = chain([1000 * RAO, 0], root=[100 * RAO, 0], tao_weight=2**63)
    state.set("ChildKeys", [P, NET], [(U64_MAX // 2, C)])
    state.set("ParentKeys", [C, NET], [(U64_MAX // 2, P)])
    # q(2^63 - 1) = (2^31 - 1) / 2^32: the child gets 1e12 * q = 499,999,999,767.17 alpha-rao, floored;
    # the parent keeps 500,000,000,232.83, floored (one rao is lost). Root: 1e11 * q = 49,999,999,976.72.
    p_alpha, c_alpha = 500_000_000_232, 499_999_999_767
    p_root, c_root = 50_000_000_023, 49_999_999_976
    assert stake_weights(state, NET) == [p_alpha + Fraction(p_root, 2), c_alpha + Fraction(c_root, 2)]


def test_select_permits_from_literal_weights():
    assert select_permits([1, Fraction(3, 2), 1], 0, None, 2) == [False, True, True]
    assert select_permits([Fraction(1, 2**32), 1], 1, 0, 1) == [True, True], "the owner: k + 1"
    with pytest.raises(ValueError):
        select_permits([Fraction(1, 3)], 0, None, 1)


def test_stake_weights_agree_with_the_oracle_on_the_demo_world():
    state = ChainState()
    world = demo(state)
    tao_weight = state.get("TaoWeight")
    for netuid in range(1, 5):
        weights = stake_weights(state, netuid)
        assert weights == [expected(world, hk, netuid, tao_weight)["stake_weight"] for hk in world.hotkeys[netuid]]
        assert state.get("Tempo", [netuid]) == world.tempo[netuid] == TEMPO


def test_an_epoch_reads_the_pending_storage_and_writes_nothing():
    state = chain([10 * RAO, 20 * RAO], k=1, permits=[True, False])
    state.set("TotalHotkeyAlpha", [HK[0], NET], 30 * RAO)  # not committed yet
    size = state.pending_size
    assert epoch_permits(state, NET) == [True, False]
    assert state.get("ValidatorPermit", [NET]) == [True, False] and state.pending_size == size


# -- blocks: epochs, then pending child sets -------------------------------------------------


def parent_child_chain() -> ChainState:
    """P (3000 alpha), C (100) and X (1000) on subnet NET, k = 2, tempo 10: epochs at 8, 19, 30."""
    return chain([3000 * RAO, 100 * RAO, 1000 * RAO], k=2, tempo=10)


def test_a_set_cooled_down_before_the_epoch_is_applied_after_it():
    state = parent_child_chain()
    state.set("PendingChildKeys", [NET, P], ([(U64_MAX, C)], 7))
    assert advance_to(state, 8) == {8: [NET]}
    # Epoch 8 still saw P with its own stake; the set was applied after it, in the same block.
    assert at(state, 8, "ValidatorPermit", [NET]) == [True, False, True]
    assert at(state, 7, "ChildKeys", [P, NET]) is None and at(state, 7, "ValidatorPermit", [NET]) is None
    assert at(state, 8, "ChildKeys", [P, NET]) == [(U64_MAX, C)]
    assert at(state, 8, "ParentKeys", [C, NET]) == [(U64_MAX, P)]
    assert at(state, 8, "PendingChildKeys", [NET, P]) is None
    # Epoch 19: C weighs 100 + 3000 alpha, P nothing.
    assert advance_to(state, 25) == {19: [NET]}
    assert stake_weights(state, NET) == [0, 3100 * RAO, 1000 * RAO]
    assert at(state, 18, "ValidatorPermit", [NET]) == [True, False, True]
    assert at(state, 19, "ValidatorPermit", [NET]) == [False, True, True]


def test_a_set_cooling_down_at_the_epoch_block_waits_for_the_next_epoch():
    state = parent_child_chain()
    state.set("PendingChildKeys", [NET, P], ([(U64_MAX, C)], 8))
    advance_to(state, 18)
    assert at(state, 18, "ChildKeys", [P, NET]) is None and at(state, 18, "PendingChildKeys", [NET, P]) is not None
    advance_to(state, 30)
    assert at(state, 19, "ValidatorPermit", [NET]) == [True, False, True], "applied after epoch 19"
    assert at(state, 19, "ChildKeys", [P, NET]) == [(U64_MAX, C)]
    assert at(state, 30, "ValidatorPermit", [NET]) == [False, True, True]


def test_block_step_runs_one_block_without_committing():
    state = parent_child_chain()
    state.set("PendingChildKeys", [NET, P], ([(U64_MAX, C)], 7))
    assert block_step(state, 7) == [] and state.get("ValidatorPermit", [NET]) is None
    assert block_step(state, 8) == [NET]
    assert state.get("ValidatorPermit", [NET]) == [True, False, True]
    assert state.get("ChildKeys", [P, NET]) == [(U64_MAX, C)] and state.head.number == 1


def test_a_set_replaces_children_and_keeps_parent_keys_consistent():
    state = chain([3000 * RAO, 100 * RAO, 1000 * RAO, 10 * RAO, 10 * RAO], tempo=10)
    half, quarter = U64_MAX // 2, U64_MAX // 4
    state.set("ChildKeys", [P, NET], [(half, C), (quarter, C2)])
    state.set("ParentKeys", [C, NET], [(half, P)])
    state.set("ParentKeys", [C2, NET], [(half, X), (quarter, P)])
    state.set("ChildKeys", [X, NET], [(half, C2)])
    state.set("PendingChildKeys", [NET, P], ([(half, C3), (quarter // 2, C2)], 0))
    advance_to(state, 8)
    by_account = sorted([(half, C3), (quarter // 2, C2)], key=lambda link: bytes.fromhex(ss58_decode(link[1])))
    assert at(state, 8, "ChildKeys", [P, NET]) == by_account, "the chain's BTreeMap order: by public key"
    assert at(state, 8, "ParentKeys", [C, NET]) is None, "C lost its only parent: no empty vector stays"
    assert at(state, 8, "ParentKeys", [C2, NET]) == [(half, X), (quarter // 2, P)], "updated in place"
    assert at(state, 8, "ParentKeys", [C3, NET]) == [(half, P)]
    assert at(state, 8, "ChildKeys", [X, NET]) == [(half, C2)], "other parents untouched"


def test_an_empty_set_revokes_every_child():
    state = parent_child_chain()
    state.set("ChildKeys", [P, NET], [(U64_MAX, C)])
    state.set("ParentKeys", [C, NET], [(U64_MAX, P)])
    state.set("PendingChildKeys", [NET, P], ([], 3))
    advance_to(state, 8)
    assert at(state, 7, "ChildKeys", [P, NET]) == [(U64_MAX, C)]
    assert at(state, 8, "ChildKeys", [P, NET]) is None and at(state, 8, "ParentKeys", [C, NET]) is None
    assert at(state, 8, "PendingChildKeys", [NET, P]) is None


def test_only_the_subnets_whose_epoch_runs_apply_their_sets():
    state = parent_child_chain()
    state.set("NetworksAdded", [2], True)
    state.set("Tempo", [2], 10)  # epochs at 7, 18, 29
    state.set("PendingChildKeys", [NET, P], ([(U64_MAX, C)], 2))
    state.set("PendingChildKeys", [2, P], ([(U64_MAX, X)], 2))
    assert advance_to(state, 8) == {7: [2], 8: [NET]}
    assert at(state, 7, "ChildKeys", [P, 2]) == [(U64_MAX, X)] and at(state, 7, "ChildKeys", [P, NET]) is None
    assert at(state, 8, "ChildKeys", [P, NET]) == [(U64_MAX, C)]


def test_advance_to_refuses_to_go_back_and_does_nothing_at_the_head():
    state = parent_child_chain()
    assert advance_to(state, 1) == {} and state.head.number == 1
    with pytest.raises(ValueError):
        advance_to(state, 0)



def test_sets_apply_in_storage_key_order_which_decides_a_child_that_was_a_parent():
    """C's set makes its parent P its child; P's set drops C. The chain visits PendingChildKeys
    by the parent's Blake2_128Concat key: if P's set comes first, C has no parent left and its
    set goes through; if C's comes first, P is still C's parent and C's set is refused."""
    import hashlib

    def key(hotkey):
        raw = bytes.fromhex(ss58_decode(hotkey))
        return hashlib.blake2b(raw, digest_size=16).digest() + raw

    for parent, child in ((P, C), (C, P)):
        state = parent_child_chain()
        state.set("ChildKeys", [parent, NET], [(U64_MAX, child)])
        state.set("ParentKeys", [child, NET], [(U64_MAX, parent)])
        state.set("PendingChildKeys", [NET, parent], ([], 0))
        state.set("PendingChildKeys", [NET, child], ([(U64_MAX, parent)], 0))
        advance_to(state, 8)
        assert at(state, 8, "ChildKeys", [parent, NET]) is None, "the revocation always applies"
        if key(parent) < key(child):
            assert at(state, 8, "ChildKeys", [child, NET]) == [(U64_MAX, parent)]
        else:
            assert at(state, 8, "ChildKeys", [child, NET]) is None, "refused: its child was its parent"
        assert at(state, 8, "PendingChildKeys", [NET, child]) is None, "refused or not, the set is gone"


def test_a_hotkey_twice_in_keys_skips_the_epoch_and_pending_sets_still_apply():
    # uids 0 and 2 both name HK[0] (``is_epoch_input_state_consistent`` is false): the permits stay as
    # the last epoch left them; the schedule advances and a due child set applies after the slot.
    state = chain([3000 * RAO, 100 * RAO, 1000 * RAO], k=1, permits=[False, True, False])
    state.set("Keys", [NET, 2], HK[0])
    state.set("PendingChildKeys", [NET, HK[1]], ([(U64_MAX, X)], 7))
    state.commit_block()
    assert advance_to(state, 10) == {8: [NET]}
    assert at(state, 8, "ValidatorPermit", [NET]) == [False, True, False], "skipped: uid 0 would take the only permit"
    assert at(state, 8, "ChildKeys", [HK[1], NET]) == [(U64_MAX, X)]
    state.set("Keys", [NET, 2], HK[2])  # repaired: the next epoch runs
    state.commit_block()
    advance_to(state, 20)
    assert at(state, 19, "ValidatorPermit", [NET]) == [True, False, False]
