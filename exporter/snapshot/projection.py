"""The next epoch's validator permits, projected from one block by the chain's rule: pure.

The subtensor epoch (``epoch/run_epoch.rs`` ``epoch_mechanism``, ``epoch/math.rs``
``is_topk_nonzero``), per subnet:

1. the stake weight of every uid 0..SubnetworkN (I64F64, the arithmetic of
   ``stake_math``; a uid without a hotkey weighs 0);
2. zeroed where ``floor(stake weight) < StakeThreshold``, except the subnet
   owner's uid (``Uids[SubnetOwnerHotkey]``), which competes with its weight;
3. normalised: each weight divided by their sum in I64F64, then narrowed to
   I32F32 - weights closer than sum / 2^32 tie;
4. top k (``MaxAllowedValidators``) non-zero by a stable ascending sort: on
   ties the lower uid is dropped first; with fewer than k non-zero uids every
   non-zero one gets a permit;
5. the owner's uid gets a permit whatever its rank.

Pending child sets are applied in the block step *after* the epoch of the same
block (``coinbase/block_step.rs``), so no set pending now counts in the next
epoch: its stake weights are today's. Classic schedule (runtimes up to at least
spec 393): the epoch runs where ``tempo - (b + n + 1) % (tempo + 1)`` is 0
(``blocks_until_next_epoch``); tempo 0 never. Dynamic tempo (from spec 423):
``min(LastEpochBlock + tempo, PendingEpochAt if set)``, as the runtime API
``get_next_epoch_start_block`` computes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

_FRAC32 = 2**32
_I64F64_ONE = 2**64


@dataclass(frozen=True, slots=True)
class Projection:
    """One subnet's next epoch."""

    netuid: int
    next_epoch_block: Optional[int]
    permits: tuple[bool, ...]  # by uid
    cutoff: Optional[int]  # I64F64 bits of the k-th strongest (the weakest given a permit by rank)
    first_out: Optional[int]  # I64F64 bits of the (k+1)-th (the strongest left out by rank)


def next_epoch_block(block: int, netuid: int, tempo: int) -> Optional[int]:
    """The first block after ``block`` at which the subnet's epoch runs; None for tempo 0."""
    if tempo <= 0:
        return None
    until = tempo - (block + netuid + 1) % (tempo + 1)
    return block + (until if until > 0 else tempo + 1)


def next_epoch_block_dynamic(block: int, tempo: int, last_epoch: int, pending_at: int) -> Optional[int]:
    """Dynamic tempo (``get_next_epoch_start_block``): min(LastEpochBlock + tempo, PendingEpochAt if set);
    an epoch already due (deferred by the per-block epoch cap) runs at the earliest at the next block."""
    if tempo <= 0:
        return None
    due = last_epoch + tempo
    if pending_at > 0:
        due = min(due, pending_at)
    return max(due, block + 1)


def project_permits(weights: Sequence[int], threshold_rao: int, owner_uid: Optional[int], k: int) -> tuple[bool, ...]:
    """Permits by uid from each uid's stake weight (I64F64 bits), as the epoch decides them."""
    filtered = [
        w if uid == owner_uid or (w >> 64) >= threshold_rao else 0
        for uid, w in enumerate(weights)
    ]
    total = sum(filtered)
    # I64F64 division then narrowing to I32F32: floor(w / total * 2^32).
    shares = [(w * _FRAC32) // total for w in filtered] if total else [0] * len(filtered)
    permits = [share != 0 for share in shares]
    if len(shares) >= k:
        ranked = sorted(range(len(shares)), key=shares.__getitem__)  # stable: lower uid first on ties
        for uid in ranked[: len(shares) - k]:
            permits[uid] = False
    if owner_uid is not None and 0 <= owner_uid < len(permits):
        permits[owner_uid] = True
    return tuple(permits)


def project(netuid: int, block: int, tempo: int, weights: Sequence[int], threshold_rao: int,
            owner_uid: Optional[int], k: int, epoch_block: Optional[int] = -1) -> Projection:
    """``epoch_block``: the next epoch when the runtime says it (dynamic tempo); -1: the classic schedule."""
    return at_epoch(netuid, block, tempo, rank(weights, threshold_rao, owner_uid, k), epoch_block)


Ranking = tuple[tuple[bool, ...], Optional[int], Optional[int]]  # (permits, cutoff, first_out)


def rank(weights: Sequence[int], threshold_rao: int, owner_uid: Optional[int], k: int) -> Ranking:
    """What the epoch decides from the stake weights alone (no block): the permits, and the rank
    boundaries by stake weight - what a holder must stay above and a contender must pass
    (besides StakeThreshold), for dashboards and alerts. Kept apart so that a subnet whose
    weights did not move can reuse it."""
    permits = project_permits(weights, threshold_rao, owner_uid, k)
    eligible = sorted(
        (w for uid, w in enumerate(weights) if w and (uid == owner_uid or (w >> 64) >= threshold_rao)),
        reverse=True,
    )
    cutoff = eligible[k - 1] if 0 < k <= len(eligible) else None
    first_out = eligible[k] if 0 <= k < len(eligible) else None
    return permits, cutoff, first_out


def at_epoch(netuid: int, block: int, tempo: int, ranking: Ranking, epoch_block: Optional[int] = -1) -> Projection:
    """The subnet's ``ranking`` at its next epoch after ``block`` (``epoch_block`` as for ``project``)."""
    when = next_epoch_block(block, netuid, tempo) if epoch_block == -1 else epoch_block
    return Projection(netuid, when, *ranking)


def bits_to_rao(bits: Optional[int]) -> Optional[float]:
    """I64F64 bits of a stake weight as rao (None stays None)."""
    return None if bits is None else bits / _I64F64_ONE
