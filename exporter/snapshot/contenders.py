"""The stake weight of every uid that is only a permit contender, and what the arithmetic of any
(hotkey, netuid) reads from a read.

The ~24,000 contenders of a mainnet read are the snapshot builder's hottest part: their
weights decide each subnet's projected permits. A subnet's weights by uid (a row) are kept
by the ``StakeMemo`` and reused, whole or uid by uid, where nothing they read moved since
the memo's last build (``ReadChanges``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from exporter.snapshot.memo import ReadChanges, StakeMemo
from exporter.snapshot.model import ChainRead
from exporter.snapshot.stake_math import InheritedStake, inherited_stake, stake_weight_with, tao_weight_i64f64


def stake_inputs(read: ChainRead, hotkey: str, netuid: int) -> tuple:
    """Everything the chain's stake arithmetic for (hotkey, netuid) reads but TaoWeight: own alpha,
    own root, the child links, and each parent's (proportion, alpha on netuid, root)."""
    stake = read.stake
    parents = read.parents.get((hotkey, netuid), ())
    return (
        stake.get((hotkey, netuid), 0), stake.get((hotkey, 0), 0), read.children.get((hotkey, netuid), ()),
        tuple([(p, stake.get((parent, netuid), 0), stake.get((parent, 0), 0)) for p, parent in parents]) if parents else (),
    )


def inherited_of(stake_inputs: tuple, tao_weight_raw: int) -> InheritedStake:
    """The chain's stake arithmetic on ``stake_inputs`` (``stake_inputs()``) and TaoWeight."""
    own_alpha, own_root, children, parents = stake_inputs
    return inherited_stake(own_alpha=own_alpha, own_root=own_root, child_proportions=[p for p, _ in children],
                           parents=parents, tao_weight_raw=tao_weight_raw)


@dataclass(frozen=True, slots=True)
class _Row:
    """One subnet's stake weights by uid as a build left them, with what the next build needs to
    reuse them: which uids were tracked validators' (weighed with their states), the hotkey of
    each contender's weight, and the owner's uid."""

    weights: list  # I64F64 bits by uid
    tracked: tuple  # the uids weighed as tracked validators
    hotkeys: list  # by uid: the contender's hotkey (None: a tracked validator's uid, or no hotkey)
    contenders: Optional[dict]  # hotkey -> uid of the contenders; None when a hotkey holds two uids
    linked: tuple  # (hotkey, netuid) of the contenders with links (their weights are memoized)
    owner: Optional[str]
    owner_uid: Optional[int]


def weigh_contenders(read: ChainRead, weights: dict[int, list], memo: Optional[StakeMemo],
                      changes: Optional[ReadChanges]) -> dict[int, int]:
    """Fill in ``weights`` the stake weight of every uid not weighed as a tracked validator (0
    without a hotkey); returns each projected subnet's owner uid (the lowest uid holding the
    owner's hotkey).

    The ~24,000 contenders of a mainnet read are the builder's hottest part. With ``changes``
    (since the memo's last build), a subnet whose uids hold the same hotkeys and the same
    uids are tracked as then takes that build's row and weighs again only the contenders
    whose inputs moved (``_moved_hotkeys``); any other subnet goes uid by uid, keeping the
    last weight of a uid whose hotkey and inputs are the same."""
    linked = read.parents.keys() | read.children.keys()
    tao_weight = tao_weight_i64f64(read.tao_weight)  # once, not per uid
    moved = _moved_hotkeys(read, changes) if changes is not None and changes.same_hotkeys else None
    owner_uids: dict[int, int] = {}
    for netuid, row in weights.items():
        last = memo.row(netuid) if memo is not None and changes is not None else None
        tracked = tuple(uid for uid, weight in enumerate(row) if weight is not None)
        if (moved is not None and last is not None and last.contenders is not None and last.tracked == tracked
                and len(last.weights) == len(row) and last.owner == read.owners.get(netuid)):
            kept = _row_again(read, netuid, row, last, moved, linked, tao_weight, memo)
        else:
            kept = _row(read, netuid, row, tracked, last, changes, linked, tao_weight, memo)
        if kept.owner_uid is not None:
            owner_uids[netuid] = kept.owner_uid
        if memo is not None:
            memo.keep_row(netuid, kept)
    return owner_uids


def _moved_hotkeys(read: ChainRead, changes: ReadChanges) -> tuple[dict[int, set], set]:
    """(netuid -> hotkeys whose stake weight there may have moved, hotkeys whose weight may have
    moved on every subnet): the reverse of ``ReadChanges.weight_unchanged``, from what moved."""
    on: dict[int, set] = {}
    for hotkey, netuid in (*changes.stake, *changes.links):  # own alpha, own links
        on.setdefault(netuid, set()).add(hotkey)
    stake, roots = changes.stake, changes.roots
    if stake or roots:
        for (child, netuid), parents in read.parents.items():  # a parent's alpha or root
            if any(parent in roots or (parent, netuid) in stake for _, parent in parents):
                on.setdefault(netuid, set()).add(child)
    return on, roots  # own root: everywhere


def _row_again(read: ChainRead, netuid: int, row: list, last: _Row, moved: tuple[dict[int, set], set],
               linked: set, tao_weight: int, memo: Optional[StakeMemo]) -> _Row:
    """``last``'s row for the same uids: the tracked validators' weights of this build, the
    contenders' of ``last`` but for those whose hotkey ``moved``, weighed again."""
    row[:] = [weight if weight is not None else kept for weight, kept in zip(row, last.weights)]
    if memo is not None:
        for key in last.linked:  # kept; one weighed again below is replaced
            memo.unchanged_weight(key)
    on, everywhere = moved
    for hotkey in on.get(netuid, set()) | everywhere:
        uid = last.contenders.get(hotkey)  # type: ignore[union-attr]
        if uid is not None:
            row[uid] = _contender_weight(read, hotkey, netuid, linked, tao_weight, memo)
    return _Row(row, last.tracked, last.hotkeys, last.contenders, last.linked, last.owner, last.owner_uid)


def _row(read: ChainRead, netuid: int, row: list, tracked: tuple, last: Optional[_Row],
         changes: Optional[ReadChanges], linked: set, tao_weight: int, memo: Optional[StakeMemo]) -> _Row:
    """The subnet's row uid by uid: a contender whose hotkey is the one ``last`` weighed there and
    whose inputs lie outside ``changes`` keeps that weight; the others are weighed."""
    hotkeys = [read.hotkeys.get((netuid, uid)) for uid in range(len(row))]
    owner = read.owners.get(netuid)
    owner_uid = hotkeys.index(owner) if owner is not None and owner in hotkeys else None
    last_hotkeys, last_weights = (last.hotkeys, last.weights) if last is not None and changes is not None else ((), ())
    contenders: list = [None] * len(row)
    for uid, hotkey in enumerate(hotkeys):
        if hotkey is None or row[uid] is not None:
            continue  # no hotkey (0, below), or a tracked validator's uid (weighed with its state)
        contenders[uid] = hotkey
        key = (hotkey, netuid)
        if uid < len(last_hotkeys) and last_hotkeys[uid] == hotkey and changes.weight_unchanged(read, key):  # type: ignore[union-attr]
            row[uid] = last_weights[uid]
            if key in linked:
                memo.unchanged_weight(key)  # type: ignore[union-attr]
        else:
            row[uid] = _contender_weight(read, hotkey, netuid, linked, tao_weight, memo)
    for uid, weight in enumerate(row):
        if weight is None:
            row[uid] = 0
    index = {hotkey: uid for uid, hotkey in enumerate(contenders) if hotkey is not None}
    return _Row(row, tracked, contenders, index if len(index) == len(contenders) - contenders.count(None) else None,
                tuple((hotkey, netuid) for hotkey in index if (hotkey, netuid) in linked), owner, owner_uid)


def _contender_weight(read: ChainRead, hotkey: str, netuid: int, linked: set, tao_weight: int,
                      memo: Optional[StakeMemo]) -> int:
    """``_stake_weight_fixed`` of a contender, inline for one without links (most of them)."""
    key = (hotkey, netuid)
    if key in linked:
        return _stake_weight_fixed(read, hotkey, netuid, memo)
    # Nothing given or received: inherited = own on both sides (the chain's
    # U96F32 round trip of a u64 is exact), then the same I64F64 sum.
    stake = read.stake
    return stake_weight_with(stake.get(key, 0), stake.get((hotkey, 0), 0), tao_weight)


def _stake_weight_fixed(read: ChainRead, hotkey: str, netuid: int, memo: Optional[StakeMemo] = None) -> int:
    """Stake weight (I64F64 bits) of a uid that is only a permit contender; with links, from ``memo``
    when every input is what it was computed from. Without links the arithmetic is a multiply and
    an add, less than comparing inputs would cost: ``_contender_weight`` computes it inline, and
    ``_weigh_contenders`` keeps the last build's where nothing it reads moved."""
    key = (hotkey, netuid)
    if key not in read.parents and key not in read.children:
        stake = read.stake
        return stake_weight_with(stake.get(key, 0), stake.get((hotkey, 0), 0), tao_weight_i64f64(read.tao_weight))
    inputs = (stake_inputs(read, hotkey, netuid), read.tao_weight)
    if memo is not None and (found := memo.weight(key, inputs)) is not None:
        return found
    weight = inherited_of(*inputs).stake_weight_fixed
    if memo is not None:
        memo.keep_weight(key, inputs, weight)
    return weight
