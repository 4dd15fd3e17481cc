"""The epoch after next, with the pending child sets that will have applied by then: pure.

The block step applies pending child sets right after the subnet's epoch
(``coinbase/block_step.rs``: ``try_set_pending_children`` runs after
``run_coinbase``, on subnets whose ``LastEpochBlock`` is this block;
``staking/set_children.rs`` ``do_set_pending_children``: every set of the
subnet whose ``cool_down_block < current_block``). So a set whose cooldown
block is before the next epoch E1 is applied at E1 after that epoch decided,
and counts first at the epoch after, E2 (E1 + tempo + 1 on the classic
schedule, E1 + tempo with dynamic tempo); a set whose cooldown is E1 or later
counts at E3 at the earliest.

The sets are applied as ``persist_pending_chidren_ok`` does, in the order
``PendingChildKeys::iter_prefix(netuid)`` visits them (the parent's
Blake2_128Concat key: blake2_128 of its public key, then the key), each one
silently refused when a new child is also a parent of the set's parent
(``ensure_bipartite_separation``) or the proportions sum past u64::MAX;
duplicate children keep the last proportion, a parent listed as its own
child is dropped. E2's stake weights are today's stakes through the edges
after those sets; then the permit rule of ``projection`` again.

Not modelled: stake moved and sets scheduled between now and E2, subnets
before their start call (the chain applies their sets whatever the cooldown),
and newer runtimes' drop of a set whose parent is below StakeThreshold.
"""

from __future__ import annotations

import hashlib

from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

import bittensor_core

from exporter.snapshot.model import Link
from exporter.snapshot.projection import project_permits

U64_MAX = 2**64 - 1
Links = tuple[Link, ...]

# Why a uid's permit at E2 differs from the next epoch's, given with the parent whose set it is:
CUTS_IT = "cuts_it"  # the set lowers this uid's stake weight (its own set: it gives more away)
LIFTS_CONTENDER = "lifts_contender"  # the set raises a uid that takes the permit by rank
RAISES_IT = "raises_it"  # the set raises this uid's stake weight
CUTS_HOLDER = "cuts_holder"  # the set lowers a uid that held the rank this one takes


@dataclass(frozen=True, slots=True)
class PermitChange:
    """A uid's permit at E2 where it differs from the next epoch's, and why."""

    permit: bool
    parent: str  # whose pending set is the reason; "" when none stands out
    reason: str


@dataclass(frozen=True, slots=True)
class AfterPending:
    """One subnet's epoch after next, with the sets due before the next epoch applied."""

    netuid: int
    apply_block: int  # E1: the sets are applied right after this epoch
    epoch_block: int  # E2: the first epoch they count in
    applied: int  # sets applied (refused ones not counted)
    permits: tuple[bool, ...]  # by uid, at E2
    changes: Mapping[int, PermitChange]  # uid -> where E2 differs from E1's projection


def account_bytes(hotkey: str) -> bytes:
    return bytes(bittensor_core.ss58_decode(hotkey))


def _apply_order(parent: str) -> bytes:
    """The Blake2_128Concat storage key of ``parent``: the order iter_prefix visits."""
    key = account_bytes(parent)
    return hashlib.blake2b(key, digest_size=16).digest() + key


def due_sets(pending: Mapping[tuple[int, str], tuple[Links, int]], netuid: int, epoch_block: int) -> list[tuple[str, Links]]:
    """The subnet's pending sets applied at ``epoch_block``, in the chain's order."""
    due = [(parent, links) for (n, parent), (links, cooldown) in pending.items() if n == netuid and cooldown < epoch_block]
    return sorted(due, key=lambda item: _apply_order(item[0]))


def _upsert(links: Links, proportion: int, hotkey: str) -> Links:
    for i, (_, who) in enumerate(links):
        if who == hotkey:
            return links[:i] + ((proportion, hotkey),) + links[i + 1:]
    return links + ((proportion, hotkey),)


def _by_account(links: Mapping[str, int]) -> Links:
    """A BTreeMap<AccountId, u64> as a vector: by public key bytes."""
    return tuple((links[h], h) for h in sorted(links, key=account_bytes))


def apply_child_sets(
    children_of: Callable[[str], Links], parents_of: Callable[[str], Links], sets: Sequence[tuple[str, Links]],
) -> tuple[dict[str, Links], dict[str, Links], list[tuple[str, Links, Links]]]:
    """ChildKeys and ParentKeys (one subnet) of every hotkey whose links the sets rewrite, and
    (parent, children before, children after) of each set applied."""
    kids: dict[str, Links] = {}
    pars: dict[str, Links] = {}

    def get_children(h: str) -> Links:
        return kids[h] if h in kids else tuple(children_of(h))

    def get_parents(h: str) -> Links:
        return pars[h] if h in pars else tuple(parents_of(h))

    applied = []
    for parent, links in sets:
        new = {child: p for p, child in links if child != parent}  # last duplicate wins
        own_parents = {p_hk: p for p, p_hk in get_parents(parent) if p_hk != parent}
        if sum(new.values()) > U64_MAX or any(child in own_parents for child in new):
            continue  # refused silently
        before = get_children(parent)
        kids[parent] = _by_account(new)
        for child in new:
            pars[child] = _upsert(get_parents(child), new[child], parent)
        for _, child in before:
            if child not in new:
                pars[child] = tuple(link for link in get_parents(child) if link[1] != parent)
        pars[parent] = _by_account(own_parents)
        for grandparent, p in own_parents.items():
            kids[grandparent] = _upsert(get_children(grandparent), p, parent)
        applied.append((parent, before, kids[parent]))
    return kids, pars, applied


def project_after_pending(
    netuid: int,
    apply_block: int,
    epoch_block: int,
    sets: Sequence[tuple[str, Links]],
    hotkeys: Sequence[Optional[str]],
    weights: Sequence[int],
    next_permits: Sequence[bool],
    children_of: Callable[[str], Links],
    parents_of: Callable[[str], Links],
    stake_weight: Callable[[str, Links, Links], int],
    stake_value: Callable[[str], float],
    threshold_rao: int,
    owner_uid: Optional[int],
    k: int,
) -> AfterPending:
    """E2's permits: ``weights`` (I64F64 bits by uid, today's) with every uid the sets touch
    recomputed by ``stake_weight(hotkey, children, parents)`` on the edges after them.
    ``stake_value(parent)``: the parent's own alpha + TaoWeight x root (rao), to weigh
    each set's part in a change."""
    kids, pars, applied = apply_child_sets(children_of, parents_of, sets)
    row = list(weights)
    for uid, hotkey in enumerate(hotkeys):
        if hotkey is not None and (hotkey in kids or hotkey in pars):
            row[uid] = stake_weight(
                hotkey, kids[hotkey] if hotkey in kids else children_of(hotkey),
                pars[hotkey] if hotkey in pars else parents_of(hotkey))
    permits = project_permits(row, threshold_rao, owner_uid, k)
    moved = [uid for uid in range(len(permits)) if permits[uid] != (uid < len(next_permits) and next_permits[uid])]
    deltas = _deltas(applied, stake_value)
    changes = {uid: _cause(uid, permits, moved, hotkeys, deltas) for uid in moved}
    return AfterPending(netuid, apply_block, epoch_block, len(applied), permits, changes)


def _deltas(applied: list[tuple[str, Links, Links]], stake_value: Callable[[str], float]) -> dict[str, dict[str, float]]:
    """hotkey -> parent -> about how much that parent's set moves the hotkey's stake weight (rao)."""
    deltas: dict[str, dict[str, float]] = {}
    for parent, before, after in applied:
        value = stake_value(parent) / U64_MAX
        old = {child: p for p, child in before}
        new = {child: p for p, child in after}
        for child in old.keys() | new.keys():
            change = (new.get(child, 0) - old.get(child, 0)) * value
            deltas.setdefault(child, {})[parent] = deltas.get(child, {}).get(parent, 0.0) + change
        given = (sum(new.values()) - sum(old.values())) * value
        deltas.setdefault(parent, {})[parent] = deltas.get(parent, {}).get(parent, 0.0) - given
    return deltas


def _cause(uid: int, permits: Sequence[bool], moved: list[int], hotkeys: Sequence[Optional[str]],
           deltas: dict[str, dict[str, float]]) -> PermitChange:
    gains = permits[uid]
    sign = 1 if gains else -1
    own = {p: d * sign for p, d in deltas.get(hotkeys[uid] or "", {}).items() if d * sign > 0}
    if own:
        return PermitChange(gains, max(own, key=lambda p: (own[p], p)), RAISES_IT if gains else CUTS_IT)
    # Not its own stake weight: a set moved a uid that went the other way past it.
    others = {}
    for other in moved:
        if permits[other] != gains:
            for p, d in deltas.get(hotkeys[other] or "", {}).items():
                if -d * sign > others.get(p, 0.0):
                    others[p] = -d * sign
    parent = max(others, key=lambda p: (others[p], p)) if others else ""
    return PermitChange(gains, parent, CUTS_HOLDER if gains else LIFTS_CONTENDER)
