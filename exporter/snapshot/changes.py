"""Detect what changed between the last recorded state and a new snapshot: a pure function.

The recorded state is what the history database last committed, so a failed
write simply means the next refresh compares against an older state and the
changes are still found, never lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from exporter.snapshot.model import Snapshot, applied_children

from exporter.snapshot.units import to_units, u64_ratio

# The bounded set of change kinds (a label value of bittensor_childkey_changes_total).
CHANGE_KINDS = (
    "edge_added",
    "edge_removed",
    "proportion_changed",
    "take_changed",
    "pending_scheduled",
    "pending_applied",
    "pending_dropped",
    "permit_gained",
    "permit_lost",
    "stake_weight_moved",
    "own_stake_moved",
    "subnet_dissolved",
    # activity_changes.py
    "uid_replaced",
    "delegate_take_changed",
    "became_inactive",
    "became_active",
)
# The hotkey of a change that is about a subnet, not a validator (``subnet_dissolved``).
NO_HOTKEY = ""


@dataclass(frozen=True, slots=True)
class ValidatorRecord:
    """What history remembers of one (hotkey, netuid) between refreshes.

    ``own_ref``/``weight_ref`` are the values at the last stake event: a move
    is measured from there, so a slow drift still raises an event once it adds
    up to the threshold.
    """

    uid: Optional[int]
    permit: bool
    own_alpha: int
    stake_weight: float
    take: float
    own_ref: int
    weight_ref: float


Pending = tuple[tuple[tuple[int, str], ...], int]  # (children, cooldown block)


@dataclass(frozen=True)
class HistoryState:
    validators: dict  # (hotkey, netuid) -> ValidatorRecord
    edges: dict  # (parent, child, netuid) -> proportion
    pending: dict  # (parent, netuid) -> Pending
    # activity_changes.py: (hotkey, netuid) -> the chain's Active flag; hotkey -> Delegates take (u16)
    active: dict = field(default_factory=dict)
    delegate_takes: dict = field(default_factory=dict)

    @classmethod
    def empty(cls) -> "HistoryState":
        return cls({}, {}, {})

    @property
    def is_empty(self) -> bool:
        return not (self.validators or self.edges or self.pending)


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    block: int
    time: float
    kind: str
    hotkey: str  # the validator the change is about (for an edge: the child)
    netuid: int
    parent: Optional[str] = None
    child: Optional[str] = None
    old: Any = None
    new: Any = None
    # Why it changed: the chain's event ("SetChildren", ...), or a named silent cause
    # ("epoch", "uid_replaced", "dropped_at_apply", "gap", "no_event"); None: not attributed.
    cause: Optional[str] = None
    extrinsic: Optional[int] = None  # the extrinsic's index in its block (None: the block step)
    block_from: Optional[int] = None  # set: the change lies somewhere in block_from..block
    backfilled: bool = False


def _unchanged(old: ValidatorRecord, v: Any, stake_ratio: float) -> bool:
    """Whether ``old`` is already the record of ``v`` with no event: every field equal and no move
    from the references (which may lag the values: a drift below the ratio), so that the record
    is reused rather than made again."""
    return (old.own_alpha == v.own_alpha and old.stake_weight == v.stake_weight and old.uid == v.uid
            and old.permit == v.permit and old.take == v.childkey_take
            and not _moved(old.own_ref, v.own_alpha, stake_ratio) and not _moved(old.weight_ref, v.stake_weight, stake_ratio))


def _moved(ref: float, new: float, ratio: float) -> bool:
    if ref == 0:
        return new != 0
    return abs(new - ref) / abs(ref) > ratio


def _pending_value(pending: Pending) -> dict:
    children, cooldown = pending
    return {"children": [[u64_ratio(p), child] for p, child in children], "cooldown_block": cooldown}


def state_of(snapshot: Snapshot, previous: HistoryState, stake_ratio: float) -> tuple[HistoryState, list[ChangeEvent]]:
    """The new recorded state and the events that lead to it from ``previous``."""
    block, when = snapshot.chain.block, snapshot.chain.timestamp_seconds
    events: list[ChangeEvent] = []

    def emit(kind: str, hotkey: str, netuid: int, **fields) -> None:
        events.append(ChangeEvent(block, when, kind, hotkey, netuid, **fields))

    first_run = previous.is_empty
    # A netuid history holds state of that is no longer a subnet was dissolved: netuid -> what it
    # took of that state ([permit holders, edges, pending sets]); each loss is recorded as usual.
    live = None if snapshot.netuids is None else frozenset(snapshot.netuids)
    gone: dict[int, list[int]] = {}

    def took(netuid: int, what: int, count: int = 1) -> bool:
        """Count a loss on ``netuid`` if the netuid is gone; whether it is."""
        if live is None or netuid in live:
            return False
        gone.setdefault(netuid, [0, 0, 0])[what] += count
        return True

    validators = {}
    recorded = previous.validators
    for v in snapshot.tracked:
        key = (v.hotkey, v.netuid)
        old = recorded.get(key)
        if old is not None and _unchanged(old, v, stake_ratio):
            validators[key] = old  # most validators between two refreshes: nothing to record
            continue
        record = ValidatorRecord(v.uid, v.permit, v.own_alpha, v.stake_weight, v.childkey_take, v.own_alpha, v.stake_weight)
        if old is None:
            # Newly tracked: a permit holder that was not one before (a watched
            # hotkey enters tracking with or without one, without a change).
            if v.permit and not first_run:
                emit("permit_gained", *key, old=False, new=True)
        else:
            own_ref, weight_ref = old.own_ref, old.weight_ref
            if abs(old.take - v.childkey_take) > 1e-12:
                emit("take_changed", *key, old=old.take, new=v.childkey_take)
            if old.permit != v.permit:
                emit("permit_gained" if v.permit else "permit_lost", *key, old=old.permit, new=v.permit)
            if _moved(old.own_ref, v.own_alpha, stake_ratio):
                emit("own_stake_moved", *key, old=to_units(old.own_ref), new=to_units(v.own_alpha))
                own_ref = v.own_alpha
            if _moved(old.weight_ref, v.stake_weight, stake_ratio):
                emit("stake_weight_moved", *key, old=to_units(old.weight_ref), new=to_units(v.stake_weight))
                weight_ref = v.stake_weight
            record = ValidatorRecord(v.uid, v.permit, v.own_alpha, v.stake_weight, v.childkey_take, own_ref, weight_ref)
        validators[key] = record
    if not validators.keys() >= recorded.keys():
        for key, old in recorded.items():
            if key in validators:
                continue
            took(key[1], 0, int(old.permit))  # a watched hotkey without a permit there: the subnet went all the same
            # No longer tracked: it holds no permit any more (and is not watched), or its subnet is gone.
            if old.permit:
                emit("permit_lost", *key, old=True, new=False)

    edges = {(e.parent, e.child, e.netuid): e.proportion for e in snapshot.chain_edges}
    # One dict comparison in the usual refresh where no link moved (the new dict is kept: its order is the snapshot's).
    if not first_run and edges != previous.edges:
        for (parent, child, netuid), proportion in edges.items():
            change = edge_change(parent, child, previous.edges.get((parent, child, netuid)), proportion)
            if change is not None:
                emit(change[0], child, netuid, **change[1])
        for (parent, child, netuid), before in previous.edges.items():
            if (parent, child, netuid) not in edges:
                took(netuid, 1)
                kind, fields = edge_change(parent, child, before, None)
                emit(kind, child, netuid, **fields)

    pending = {(p.parent, p.netuid): (tuple(p.children), p.cooldown_block) for p in snapshot.chain_pending}
    if not first_run and pending != previous.pending:
        for key, value in pending.items():
            if previous.pending.get(key) != value:
                emit("pending_scheduled", *key, parent=key[0], old=_optional_pending(previous.pending.get(key)), new=_pending_value(value))
        for (parent, netuid), before in previous.pending.items():
            if (parent, netuid) in pending:
                continue
            now = {(p, c) for (par, c, n), p in edges.items() if par == parent and n == netuid}
            # A set its subnet's dissolution deleted was dropped, whatever it scheduled.
            dissolved = took(netuid, 2)
            kind = "pending_applied" if now == applied_set(parent, before[0]) and not dissolved else "pending_dropped"
            emit(kind, parent, netuid, parent=parent, old=_pending_value(before))
    if gone:
        events[:0] = [ChangeEvent(block, when, "subnet_dissolved", NO_HOTKEY, netuid, old=dissolved_value(*counts))
                      for netuid, counts in sorted(gone.items())]
    return HistoryState(validators, edges, pending), events


def dissolved_value(permits: int, edges: int, pending: int) -> dict:
    """The old value of a ``subnet_dissolved`` event: what history held of the subnet when it went."""
    return {"permits": permits, "edges": edges, "pending": pending}


def applied_set(parent: str, children) -> set[tuple[int, str]]:
    """{(proportion, child)} of a pending list as the chain applies it (``applied_children``): what
    ChildKeys then holds, so that a swapped list naming its parent or a child twice is no drop."""
    return {(q, child) for child, q in applied_children(parent, tuple(children)).items()}


def edge_change(parent: str, child: str, before: Optional[int], after: Optional[int]) -> Optional[tuple[str, dict]]:
    """(kind, fields) of one parent -> child edge going from proportion ``before`` to ``after``
    (None: no edge), or None when it did not change."""
    if before == after:
        return None
    if before is None:
        return "edge_added", {"parent": parent, "child": child, "new": u64_ratio(after)}
    if after is None:
        return "edge_removed", {"parent": parent, "child": child, "old": u64_ratio(before)}
    return "proportion_changed", {"parent": parent, "child": child, "old": u64_ratio(before), "new": u64_ratio(after)}


def _optional_pending(value: Optional[Pending]) -> Optional[dict]:
    return None if value is None else _pending_value(value)
