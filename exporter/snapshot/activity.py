"""Build the activity and earnings part of a snapshot from one read: a pure function, no I/O.

Per validator exported (with a uid, subnets but root): its entry of each per-uid vector,
the activity cutoff as the connected runtime computes it (``utils/misc.rs``
``get_activity_cutoff_blocks``: ``max(1, ActivityCutoffFactorMilli x tempo / 1000)``; older
runtimes store ``ActivityCutoff`` in blocks), its share of the permit holders' stake weight
at the last epoch (``StakeWeight``, the epoch's own normalised weights) to set its dividend
share against, and for each parent giving it stake, an estimate of the dividends the chain
routes to that parent and the take the child keeps (``get_parent_child_dividends_distribution``
in ``coinbase/run_coinbase.rs``, U96F32 as the chain computes it, applied to the child's
``Emission`` of the last epoch at this block's stakes: an estimate, as the stakes, links and
takes may have moved since the epoch).
"""

from __future__ import annotations

from typing import Optional

from exporter.snapshot.activity_model import MECHANISM_STRIDE, ActivityRead, ActivitySnapshot, ChildkeyEarning, ValidatorActivity
from exporter.snapshot.model import ChainRead, Snapshot
from exporter.snapshot.stake_math import effective_take, u96f32_from_int, u96f32_mul, u96f32_ratio, u96f32_to_u64
from exporter.snapshot.units import TAKE_DENOMINATOR

CUTOFF_FACTOR = "ActivityCutoffFactorMilli"
_ONE = 1 << 32  # 1.0 in U96F32


def cutoff_blocks(activity: ActivityRead, netuid: int, tempo: int) -> Optional[int]:
    """The subnet's activity cutoff in blocks, as the connected runtime defines it (None: not read)."""
    raw = activity.cutoffs.get(netuid)
    if raw is None:
        return None
    if activity.cutoff_item == CUTOFF_FACTOR:
        return max(1, raw * tempo // 1000)
    return raw


def build_activity(read: ChainRead, snapshot: Snapshot) -> Optional[ActivitySnapshot]:
    activity = read.activity
    if activity is None:
        return None
    validators = []
    subnets: dict[int, _Subnet] = {}  # the vectors of each subnet, looked up once
    for v in snapshot.validators:
        if v.uid is None or v.netuid == 0 or v.netuid not in activity.mechanisms:
            continue
        subnet = subnets.get(v.netuid)
        if subnet is None:
            subnet = subnets[v.netuid] = _Subnet(read, activity, v.netuid)
        found = subnet.validator(v.hotkey, v.uid)
        if found is not None:
            validators.append(found)
    earnings = tuple(earning for a in validators for earning in _earnings(read, activity, a.hotkey, a.netuid, a.uid))
    active = activity.active
    # Plain dicts: a snapshot is handed across processes (the benchmarks' workers) as it is.
    return ActivitySnapshot(
        block=read.block,
        cutoffs={n: blocks for n in activity.mechanisms if (blocks := cutoff_blocks(activity, n, read.tempos.get(n, 0))) is not None},
        mechanisms=dict(activity.mechanisms),
        validators=tuple(validators),
        earnings=earnings,
        uid_hotkeys=dict(read.hotkeys),
        tracked_active={
            (v.hotkey, v.netuid): flag for v in snapshot.tracked
            if v.uid is not None and (flag := _at(active.get(v.netuid), v.uid)) is not None
        },
        tracked_takes=dict(activity.delegate_takes),
        root_dividends_item=activity.root_dividends_item,
    )


def _at(vector, uid: int):
    return vector[uid] if vector is not None and uid < len(vector) else None


class _Subnet:
    """One subnet's vectors, and its permit holders' StakeWeight summed (what dividends go to)."""

    def __init__(self, read: ChainRead, activity: ActivityRead, netuid: int):
        self.read, self.activity, self.netuid = read, activity, netuid
        self.last_update = [activity.last_update.get(netuid + m * MECHANISM_STRIDE, ())
                            for m in range(activity.mechanisms.get(netuid, 1))]
        self.active = activity.active.get(netuid, ())
        self.trust = activity.validator_trust.get(netuid, ())
        self.dividends = activity.dividends.get(netuid, ())
        self.emission = activity.emission.get(netuid, ())
        self.weights = activity.stake_weight.get(netuid, ())
        self.permitted = sum(w for w, held in zip(self.weights, read.permits.get(netuid, ())) if held)

    def validator(self, hotkey: str, uid: int) -> Optional[ValidatorActivity]:
        if uid >= len(self.last_update[0]):
            return None  # the uid has no LastUpdate entry (registered since the vector was written)
        activity, netuid = self.activity, self.netuid
        # A mechanism whose row has no entry for the uid (none written yet) is left out: None.
        last = tuple(vector[uid] if uid < len(vector) else None for vector in self.last_update)
        own = _at(self.weights, uid)
        return ValidatorActivity(
            hotkey=hotkey,
            netuid=netuid,
            uid=uid,
            last_update=last,
            blocks_since_update=max(0, self.read.block - min(b for b in last if b is not None)),
            active=_at(self.active, uid),
            validator_trust=_at(self.trust, uid),
            dividends=_at(self.dividends, uid),
            emission=_at(self.emission, uid),
            stake_share=own / self.permitted if own is not None and self.permitted else None,
            alpha_dividends=activity.alpha_dividends.get((netuid, hotkey), 0),
            root_dividends=activity.root_dividends.get((netuid, hotkey), 0) if activity.root_dividends_item else None,
            delegate_take=activity.delegate_takes.get(hotkey),
        )


def _coldkey(read: ChainRead, activity: ActivityRead, hotkey: str) -> Optional[str]:
    """The hotkey's coldkey where the read has it (tracked validators); a parent not tracked (no
    permit, not watched) counts as another coldkey than the child's."""
    return read.coldkeys.get(hotkey)


def _earnings(read: ChainRead, activity: ActivityRead, child: str, netuid: int, uid: int) -> list[ChildkeyEarning]:
    """``get_parent_child_dividends_distribution(child, netuid, Emission[uid])`` at this block's values."""
    parents = read.parents.get((child, netuid), ())
    dividends = _at(activity.emission.get(netuid), uid)
    if not parents or dividends is None:
        return []
    stake = read.stake
    tao_weight = u96f32_ratio(read.tao_weight)
    remaining = _ONE
    for proportion, _ in read.children.get((child, netuid), ()):
        remaining = max(0, remaining - u96f32_ratio(proportion))
    own = u96f32_mul(u96f32_from_int(stake.get((child, netuid), 0)), remaining)
    own_root = u96f32_mul(u96f32_mul(u96f32_from_int(stake.get((child, 0), 0)), remaining), tao_weight)
    total = u96f32_from_int(u96f32_to_u64(own + own_root))  # get_self_contribution returns a u64
    contributions = []
    for proportion, parent in parents:
        q = u96f32_ratio(proportion)
        alpha = u96f32_mul(u96f32_from_int(stake.get((parent, netuid), 0)), q)
        root = u96f32_mul(u96f32_mul(u96f32_from_int(stake.get((parent, 0), 0)), q), tao_weight)
        contributions.append((parent, alpha + root))
        total += alpha + root
    subnet_min = read.min_take_per_subnet.get(netuid) if read.min_take_per_subnet is not None else None
    take = (effective_take(read.takes.get((child, netuid), 0), read.min_take, subnet_min) << 32) // TAKE_DENOMINATOR
    burn = u96f32_ratio(activity.ck_burn)
    validating = u96f32_from_int(dividends)
    child_coldkey = _coldkey(read, activity, child)
    earnings = []
    for parent, contribution in contributions:
        factor = (contribution << 32) // total if total else 0
        share = u96f32_mul(validating, factor)
        kept = burnt = 0
        parent_coldkey = _coldkey(read, activity, parent)
        if parent_coldkey is None or parent_coldkey != child_coldkey:
            burnt, kept = u96f32_mul(burn, share), u96f32_mul(take, share)
        earnings.append(ChildkeyEarning(parent, child, netuid, share / _ONE, kept / _ONE, burnt / _ONE))
    return earnings
