"""The change events history must hold, computed from the chain's states as the exporter saw them.

Written from the change-history contract (issue 10) and the chain's storage
semantics, independently of the exporter's change detector: nothing here
imports ``exporter``. Stake weights come from ``tests/oracle.py`` (exact
fractions of the chain's formulas).

The model is fed the chain (a ``tests.scenario_chain.World``) at every block
where the exporter refreshed after a change, in order, and answers the events
that refresh must record:

- the *tracked* population: every validator-permit holder on every subnet
  other than root, plus every watched hotkey on every subnet (not root) where
  it holds a uid or has child or parent keys, whatever the export scope
  (``min_stake_weight``, ``netuids``) says;
- ``take_changed`` (old, new: effective take ratio 0-1), ``permit_gained`` /
  ``permit_lost`` (old, new: booleans) for tracked pairs; a pair that becomes
  tracked with a permit gained it, one that stops being tracked while it held
  one lost it;
- ``own_stake_moved`` / ``stake_weight_moved`` (alpha units) when the value
  moved by more than the ratio from a reference: the value at the last such
  event, or when the pair started being tracked;
- ``edge_added`` / ``edge_removed`` / ``proportion_changed`` over the whole
  chain's ChildKeys (hotkey: the child; ratios of u64::MAX);
- ``pending_scheduled`` (hotkey: the parent; old: the previous pending value or
  None) and, when a pending row disappears, ``pending_applied`` if the parent's
  children now equal the pending set, else ``pending_dropped`` (old: the pending
  value, new: None);
- a netuid outside ``world.subnets`` is no subnet (it is being dissolved; its
  entries left in the world's maps are leftovers): nothing of it is tracked, and
  a netuid the last observation held state of (a tracked pair, an edge, a pending
  set) that is no longer a subnet gives one ``subnet_dissolved`` (hotkey "", old:
  how many permit holders, edges and pending sets of it were held) besides the
  losses above, each pending set of it ``pending_dropped``;
- the first observation of an empty history (a new file, or after ``history
  reset``) is a baseline: no events.

A stake move within ``margin`` of the threshold raises ``AmbiguousScript``: a
scenario must make every stake expectation clear-cut.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterable, Optional

from tests.oracle import expected as oracle

RAO = 10**9
U64_MAX = 2**64 - 1
TAKE_DENOMINATOR = 65535


class AmbiguousScript(AssertionError):
    """A stake move too close to the threshold for the expectation to be clear-cut."""


@dataclass(frozen=True)
class Event:
    block: int
    kind: str
    hotkey: str
    netuid: int
    parent: Optional[str] = None
    child: Optional[str] = None
    old: Any = None
    new: Any = None

    @property
    def key(self) -> tuple:
        return (self.block, self.kind, self.hotkey, self.netuid, self.parent, self.child)

    def __str__(self) -> str:
        who = f"{self.hotkey[:8]} sn{self.netuid}"
        if self.parent and self.parent != self.hotkey:
            who += f" parent={self.parent[:8]}"
        return f"#{self.block} {self.kind} {who} {_short(self.old)} -> {_short(self.new)}"


@dataclass(frozen=True)
class _Tracked:
    permit: bool
    take: int  # effective, u16 of 65535
    own: int  # rao
    weight: Fraction  # rao
    own_ref: int
    weight_ref: Fraction


def ratio(proportion: int) -> float:
    return proportion / U64_MAX


def pending_value(links: Iterable[tuple[int, str]], cooldown: int) -> dict:
    return {"children": [[ratio(p), child] for p, child in links], "cooldown_block": cooldown}


def tracked_pairs(world, watched: Iterable[str]) -> dict[tuple[str, int], bool]:
    """(hotkey, netuid) -> permit, for every pair history follows."""
    pairs: dict[tuple[str, int], bool] = {}
    for netuid, hotkeys in world.subnets.items():
        if netuid == 0:
            continue
        for uid, h in enumerate(hotkeys):
            if world.permits[netuid][uid]:
                pairs[(h, netuid)] = True
    for w in watched:
        for netuid, hotkeys in world.subnets.items():
            if netuid != 0 and w in hotkeys:
                pairs.setdefault((w, netuid), world.permits[netuid][hotkeys.index(w)])
        for h, netuid in (*world.child_keys, *world.parent_keys):
            if h == w and netuid != 0 and netuid in world.subnets:
                pairs.setdefault((w, netuid), False)
    return pairs


class EventModel:
    def __init__(self, watched: Iterable[str] = (), stake_change_ratio: float = 0.05, margin: float = 0.01):
        self.watched = tuple(watched)
        self.ratio = Fraction(str(stake_change_ratio))
        self.margin = Fraction(str(margin))
        self._validators: Optional[dict[tuple[str, int], _Tracked]] = None  # None: nothing recorded yet
        self._edges: dict[tuple[str, str, int], int] = {}
        self._pending: dict[tuple[str, int], tuple[tuple, int]] = {}

    def reset(self) -> None:
        """``history reset``: the next observation is a baseline."""
        self._validators = None
        self._edges, self._pending = {}, {}

    def observe(self, world, block: int) -> list[Event]:
        """The events the refresh that first reads ``world`` at ``block`` must record."""
        baseline = self._validators is None
        previous = self._validators or {}
        events: list[Event] = []

        def emit(kind: str, hotkey: str, netuid: int, **fields) -> None:
            if not baseline:
                events.append(Event(block, kind, hotkey, netuid, **fields))

        validators: dict[tuple[str, int], _Tracked] = {}
        for key, permit in sorted(tracked_pairs(world, self.watched).items()):
            hotkey, netuid = key
            take = max(world.takes.get(key, 0), world.min_take)
            own = world.stake.get(key, 0)
            weight = Fraction(oracle(world, hotkey, netuid, world.tao_weight)["stake_weight"])
            old = previous.get(key)
            if old is None:
                if permit:
                    emit("permit_gained", hotkey, netuid, old=False, new=True)
                validators[key] = _Tracked(permit, take, own, weight, own, weight)
                continue
            own_ref, weight_ref = old.own_ref, old.weight_ref
            if take != old.take:
                emit("take_changed", hotkey, netuid, old=old.take / TAKE_DENOMINATOR, new=take / TAKE_DENOMINATOR)
            if permit != old.permit:
                emit("permit_gained" if permit else "permit_lost", hotkey, netuid, old=old.permit, new=permit)
            if self._moved(own_ref, own, key, "own stake"):
                emit("own_stake_moved", hotkey, netuid, old=own_ref / RAO, new=own / RAO)
                own_ref = own
            if self._moved(weight_ref, weight, key, "stake weight"):
                emit("stake_weight_moved", hotkey, netuid, old=float(weight_ref / RAO), new=float(weight / RAO))
                weight_ref = weight
            validators[key] = _Tracked(permit, take, own, weight, own_ref, weight_ref)
        for key, old in sorted(previous.items()):
            if key not in validators and old.permit:
                emit("permit_lost", *key, old=True, new=False)

        live = set(world.subnets)
        # What the last observation held of each netuid that is no longer a subnet: [permits, edges, pending].
        gone: dict[int, list[int]] = {}
        for (hotkey, netuid), old in previous.items():
            if netuid not in live:
                gone.setdefault(netuid, [0, 0, 0])[0] += old.permit
        for (_, _, netuid) in self._edges:
            if netuid not in live:
                gone.setdefault(netuid, [0, 0, 0])[1] += 1
        for (_, netuid) in self._pending:
            if netuid not in live:
                gone.setdefault(netuid, [0, 0, 0])[2] += 1
        for netuid, (permits, edge_count, pending_count) in sorted(gone.items()):
            emit("subnet_dissolved", "", netuid, old={"permits": permits, "edges": edge_count, "pending": pending_count})

        edges = {(parent, child, netuid): p for (parent, netuid), links in world.child_keys.items() for p, child in links
                 if netuid in live}
        for (parent, child, netuid), p in sorted(edges.items()):
            before = self._edges.get((parent, child, netuid))
            if before is None:
                emit("edge_added", child, netuid, parent=parent, child=child, new=ratio(p))
            elif before != p:
                emit("proportion_changed", child, netuid, parent=parent, child=child, old=ratio(before), new=ratio(p))
        for (parent, child, netuid), before in sorted(self._edges.items()):
            if (parent, child, netuid) not in edges:
                emit("edge_removed", child, netuid, parent=parent, child=child, old=ratio(before))

        pending = {(parent, netuid): (tuple(links), cooldown) for (netuid, parent), (links, cooldown) in world.pending.items()
                   if netuid in live}
        for (parent, netuid), value in sorted(pending.items()):
            before = self._pending.get((parent, netuid))
            if before != value:
                emit("pending_scheduled", parent, netuid, parent=parent,
                     old=None if before is None else pending_value(*before), new=pending_value(*value))
        for (parent, netuid), (links, cooldown) in sorted(self._pending.items()):
            if (parent, netuid) in pending:
                continue
            now = {(p, c) for (par, c, n), p in edges.items() if par == parent and n == netuid}
            kind = "pending_applied" if now == set(links) and netuid in live else "pending_dropped"
            emit(kind, parent, netuid, parent=parent, old=pending_value(links, cooldown))

        self._validators, self._edges, self._pending = validators, edges, pending
        return events

    def _moved(self, ref, new, key, what: str) -> bool:
        ref, new = Fraction(ref), Fraction(new)
        if ref == 0:
            return new != 0
        change = abs(new - ref) / abs(ref)
        if abs(change - self.ratio) <= self.margin:
            raise AmbiguousScript(f"{what} of {key} moved {float(change):.2%} from its reference: too close to "
                                  f"{float(self.ratio):.0%} to expect anything")
        return change > self.ratio


# -- comparing ----------------------------------------------------------------


def same_value(a: Any, b: Any, rel: float = 1e-9) -> bool:
    """Equal, floats within ``rel`` (stake weights are exact fractions here, floats in the exporter)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=rel, abs_tol=1e-15)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k], rel) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y, rel) for x, y in zip(a, b))
    return a == b


@dataclass
class Diff:
    missing: list[Event]  # expected, not recorded
    extra: list[Event]  # recorded, not expected (a false event, or a duplicate)
    wrong: list[tuple[Event, Event]]  # (expected, recorded): same change, other old/new value

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.wrong)

    def __str__(self) -> str:
        lines = [f"missing {len(self.missing)}, extra {len(self.extra)}, wrong value {len(self.wrong)}"]
        lines += [f"  missing: {e}" for e in self.missing]
        lines += [f"  extra:   {e}" for e in self.extra]
        lines += [f"  wrong:   expected {e}\n           recorded {r}" for e, r in self.wrong]
        return "\n".join(lines)


def compare(expected: list[Event], recorded: list[Event]) -> Diff:
    """Match events by (block, kind, hotkey, netuid, parent, child); then compare old and new."""
    want: dict[tuple, list[Event]] = {}
    for e in expected:
        want.setdefault(e.key, []).append(e)
    duplicates = [k for k, n in Counter(e.key for e in expected).items() if n > 1]
    assert not duplicates, f"the model expects one change twice: {duplicates}"
    missing, extra, wrong = [], [], []
    seen: set = set()
    for r in recorded:
        match = want.get(r.key)
        if match is None or r.key in seen:
            extra.append(r)
            continue
        seen.add(r.key)
        e = match[0]
        if not (same_value(e.old, r.old) and same_value(e.new, r.new)):
            wrong.append((e, r))
    missing = [e for e in expected if e.key not in seen]
    return Diff(missing, extra, wrong)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.9g}"
    if isinstance(value, dict):
        children = [[round(p, 6), c[:8]] for p, c in value.get("children", [])]
        return f"{{children {children}, cooldown {value.get('cooldown_block')}}}"
    return repr(value)
