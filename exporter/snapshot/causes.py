"""Each change at the block where it happened, with its cause: a pure function of two recorded
states and the chain's events of the blocks between them.

``state_of`` compares the last recorded state with the new one: a net change,
stamped with the block the exporter read. The chain's events say more:
``attribute`` replays them from the recorded state, so a take set four times
in four blocks is four changes at their blocks, a child set scheduled and
revoked between two refreshes is two, and each names its event and extrinsic.
What the events do not explain is the remainder between the replayed state
and the new one; it gets a named silent cause where one is known (an epoch
decided a permit, a pending set was dropped when it was due, a hotkey swap),
and otherwise the block range it lies in: ``gap`` when part of that range
could not be read (a pruning node keeps about 256 blocks), ``no_event`` when
the events were read and none explains it. Nothing is placed at a block the
chain did not say.

A subnet's dissolution is one ``subnet_dissolved`` event (at its ``NetworkRemoved``), and
everything it took (permits, edges, pending sets) is placed with it: the same block, cause
and extrinsic, whatever else touched those hotkeys.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Iterable, Optional

from exporter.snapshot.changes import (
    ChangeEvent, HistoryState, Pending, _optional_pending, _pending_value, applied_set, edge_change, state_of,
)
from exporter.snapshot.model import ChainEvent, EventWindow, Snapshot, applied_children
from exporter.snapshot.activity_changes import with_activity_changes
from exporter.snapshot.units import take_ratio

# The chain's events a change can be attributed to (and so the events read).
EVENT_CAUSES = (
    "SetChildrenScheduled", "SetChildren", "ChildKeyTakeSet", "MinChildKeyTakeSet",
    "MinChildKeyTakePerSubnetSet", "HotkeySwapped", "HotkeySwappedOnSubnet",
    "NetworkAdded", "NetworkRemoved", "SubnetOwnerHotkeySet", "StakeThresholdSet",
    "MaxAllowedValidatorsSet", "NeuronRegistered", "StakeAdded", "StakeRemoved",
    "StakeMoved", "StakeTransferred", "StakeSwapped", "AddStakeBurn", "AutoStakeAdded",
    "EpochDeferred", "EpochSkipped",
    "TakeDecreased", "TakeIncreased",  # activity_changes.py
)
# Causes storage shows without an event of their own.
SILENT_CAUSES = ("epoch", "dropped_at_apply", "suspension", "gap", "no_event")
CAUSES = frozenset(EVENT_CAUSES + SILENT_CAUSES)

_STAKE_EVENTS = frozenset({"StakeAdded", "StakeRemoved", "StakeMoved", "StakeTransferred", "StakeSwapped",
                           "AddStakeBurn", "AutoStakeAdded"})
_SWAPS = frozenset({"HotkeySwapped", "HotkeySwappedOnSubnet"})
_REPLAYED = frozenset({"take_changed", "edge_added", "edge_removed", "proportion_changed",
                       "pending_scheduled", "pending_applied", "pending_dropped"})
_TAKE_EPSILON = 1e-12  # takes are compared as ratios, as state_of does


def attribute(previous: HistoryState, state: HistoryState, net: list[ChangeEvent],
              window: Optional[EventWindow], suspended: frozenset = frozenset()) -> list[ChangeEvent]:
    """The changes from ``previous`` to ``state`` as the events in ``window`` say they happened.

    ``net`` is what ``state_of`` found; without a window (history's first
    refresh, or no events read) it is returned as it is. ``suspended``: the
    hotkeys whose childkeys the runtime suspends at the new block.
    """
    if window is None or previous.is_empty:
        return net
    return _Attribution(previous, state, window, suspended).run(net)


def changes_since(previous: HistoryState, snapshot: Snapshot, stake_ratio: float,
                  window: Optional[EventWindow]) -> tuple[HistoryState, list[ChangeEvent]]:
    """The new recorded state and its changes from ``previous``, each placed by ``window``'s events
    (None: the net changes, at the snapshot's block). What a live refresh and a backfill step record."""
    state, net = state_of(snapshot, previous, stake_ratio)
    suspended = frozenset(v.hotkey for v in snapshot.tracked if v.suspended)
    state, activity = with_activity_changes(snapshot, previous, state, window)
    return state, attribute(previous, state, net, window, suspended) + activity


class _Attribution:
    def __init__(self, previous: HistoryState, state: HistoryState, window: EventWindow, suspended: frozenset):
        self.previous, self.state, self.window, self.suspended = previous, state, window, suspended
        self.events = sorted(window.events, key=lambda e: (e.block, e.index))
        self.out: list[ChangeEvent] = []
        self._parents_index: Optional[dict[tuple[str, int], set[str]]] = None
        self._weight_moves: set[tuple[str, int]] = set()  # (hotkey, netuid) of this run's stake-weight moves
        self._dissolved: dict[int, ChangeEvent] = {}  # netuid -> its subnet_dissolved event, placed

    def run(self, net: list[ChangeEvent]) -> list[ChangeEvent]:
        self._weight_moves = {(c.hotkey, c.netuid) for c in net if c.kind == "stake_weight_moved"}
        # A dissolution is event-driven (NetworkRemoved): at that event, else in the blocks not read.
        self._dissolved = {c.netuid: self._remainder(c, (), event_driven=True) for c in net if c.kind == "subnet_dissolved"}
        self.out.extend(self._dissolved.values())
        self._child_sets()
        self._takes()
        for change in net:
            if change.kind in _REPLAYED or change.kind == "subnet_dissolved":
                continue  # placed above
            if change.netuid in self._dissolved:
                self.out.append(self._with_dissolution(change))
            elif change.kind in ("permit_gained", "permit_lost"):
                self.out.append(self._permit(change))
            elif change.kind in ("own_stake_moved", "stake_weight_moved"):
                self.out.append(self._stake(change))
            else:
                self.out.append(self._remainder(change, (change.hotkey,), event_driven=False))
        return self.out

    def _parents(self) -> dict[tuple[str, int], set[str]]:
        """(child, netuid) -> its parents before or after, for the children whose stake weight
        moved (indexed once, in one pass over the edges: ~7,000 at mainnet scale)."""
        if self._parents_index is None:
            index: dict[tuple[str, int], set[str]] = defaultdict(set)
            wanted = self._weight_moves
            for edges in (self.previous.edges, self.state.edges):
                for parent, child, netuid in edges:
                    if (child, netuid) in wanted:
                        index[(child, netuid)].add(parent)
            self._parents_index = index
        return self._parents_index

    # -- placing a change --------------------------------------------------

    def _at(self, event: ChainEvent, kind: str, hotkey: str, netuid: int, **fields) -> ChangeEvent:
        return ChangeEvent(event.block, self.window.time_of(event.block), kind, hotkey, netuid,
                           cause=event.name, extrinsic=event.extrinsic, **fields)

    def _placed(self, change: ChangeEvent, event: ChainEvent) -> ChangeEvent:
        return replace(change, block=event.block, time=self.window.time_of(event.block),
                       cause=event.name, extrinsic=event.extrinsic)

    def _with_dissolution(self, change: ChangeEvent) -> ChangeEvent:
        """A loss its subnet's dissolution caused, placed as the dissolution is."""
        d = self._dissolved[change.netuid]
        return replace(change, block=d.block, time=d.time, cause=d.cause, extrinsic=d.extrinsic, block_from=d.block_from)

    def _remainder(self, change: ChangeEvent, hotkeys: Iterable[str], *, event_driven: bool,
                   cause: Optional[str] = None) -> ChangeEvent:
        """A change the events do not explain: a hotkey swap or a subnet's removal if one touched it;
        else the range it lies in, flagged ``gap`` if part of it could not be read."""
        involved = set(hotkeys)
        for event in reversed(self.events):
            if event.name in _SWAPS and involved & set(event.accounts) and (not event.netuids or change.netuid in event.netuids):
                return self._placed(change, event)
            if event.name in ("NetworkRemoved", "NetworkAdded") and change.netuid in event.netuids:
                return self._placed(change, event)
        w = self.window
        if w.gap is not None:
            # An event-driven change with no event among the blocks read happened in the blocks not read.
            block = w.read_from - 1 if event_driven else w.last
            return replace(change, block=block, time=w.time_of(block), cause="gap", block_from=w.first)
        return replace(change, block=w.last, time=w.time_of(w.last), cause=cause or "no_event", block_from=w.first)

    # -- child sets and pending sets, replayed ---------------------------------

    def _child_sets(self) -> None:
        events: dict[tuple[str, int], list[ChainEvent]] = defaultdict(list)
        for e in self.events:
            if e.name in ("SetChildren", "SetChildrenScheduled") and e.accounts and e.netuids:
                events[(e.accounts[0], e.netuids[0])].append(e)
        # Only child sets and pending sets that changed or have events: an unchanged chain costs one pass.
        before, after = self.previous.edges, self.state.edges
        keys = {(p, n) for (p, c, n), q in after.items() if before.get((p, c, n)) != q}
        keys |= {(p, n) for (p, c, n) in before if (p, c, n) not in after}
        keys |= {k for k in set(self.previous.pending) | set(self.state.pending)
                 if self.previous.pending.get(k) != self.state.pending.get(k)}
        keys |= set(events)
        if not keys:
            return
        before_edges, after_edges = _by_parent(before, keys), _by_parent(after, keys)
        for parent, netuid in sorted(keys, key=lambda k: (k[1], k[0])):
            edges = before_edges.get((parent, netuid), {})
            pending = self.previous.pending.get((parent, netuid))
            for e in events.get((parent, netuid), ()):
                if e.name == "SetChildrenScheduled":
                    scheduled: Pending = (e.children, e.numbers[0] if e.numbers else 0)
                    if scheduled != pending:
                        self.out.append(self._at(e, "pending_scheduled", parent, netuid, parent=parent,
                                                 old=_optional_pending(pending), new=_pending_value(scheduled)))
                    pending = scheduled
                    continue
                # The event lists the set as scheduled; ChildKeys gets it as the chain applies it.
                applied = applied_children(parent, e.children)
                if pending is not None and set(pending[0]) == set(e.children):
                    self.out.append(self._at(e, "pending_applied", parent, netuid, parent=parent, old=_pending_value(pending)))
                    pending = None
                self.out.extend(self._at(e, kind, child, netuid, **fields)
                                for kind, child, fields in _edge_changes(parent, edges, applied))
                edges = applied
            final_edges = after_edges.get((parent, netuid), {})
            for kind, child, fields in _edge_changes(parent, edges, final_edges):
                net = ChangeEvent(self.window.last, 0.0, kind, child, netuid, **fields)
                if netuid in self._dissolved:
                    self.out.append(self._with_dissolution(net))
                else:
                    self.out.append(self._remainder(net, (parent, child), event_driven=True))
            self._pending_remainder(parent, netuid, pending, final_edges)

    def _pending_remainder(self, parent: str, netuid: int, pending: Optional[Pending], final_edges: dict) -> None:
        final = self.state.pending.get((parent, netuid))
        if final == pending:
            return
        if netuid in self._dissolved:  # deleted with its subnet: dropped, whatever it scheduled
            net = ChangeEvent(self.window.last, 0.0, "pending_dropped", parent, netuid, parent=parent,
                              old=_optional_pending(pending))
            self.out.append(self._with_dissolution(net))
            return
        if final is not None:
            net = ChangeEvent(self.window.last, 0.0, "pending_scheduled", parent, netuid, parent=parent,
                              old=_optional_pending(pending), new=_pending_value(final))
            self.out.append(self._remainder(net, (parent,), event_driven=True))
            return
        assert pending is not None
        applied = {(q, child) for child, q in final_edges.items()} == applied_set(parent, pending[0])
        kind = "pending_applied" if applied else "pending_dropped"
        net = ChangeEvent(self.window.last, 0.0, kind, parent, netuid, parent=parent, old=_pending_value(pending))
        due = [b for b in self.window.epochs.get(netuid, ()) if b > pending[1]]
        if not applied and due and due[0] >= self.window.read_from:
            # Due at that epoch and gone without a SetChildren: the chain dropped it when it was due
            # (its parent was below the stake threshold then).
            self.out.append(replace(net, block=due[0], time=self.window.time_of(due[0]), cause="dropped_at_apply"))
            return
        self.out.append(self._remainder(net, (parent,), event_driven=applied))

    # -- takes, replayed -------------------------------------------------------

    def _takes(self) -> None:
        by_key: dict[tuple[str, Optional[int]], list[ChainEvent]] = defaultdict(list)
        for e in self.events:
            if e.name == "ChildKeyTakeSet" and e.accounts and e.numbers:
                by_key[(e.accounts[0], e.netuids[0] if e.netuids else None)].append(e)
        previous, current = self.previous.validators, self.state.validators
        moved = {k for k, r in current.items() if k in previous and abs(previous[k].take - r.take) > _TAKE_EPSILON}
        hotkeys = {h for h, _ in by_key} | {h for h, _ in moved}
        if not hotkeys:
            return  # no take moved and no take was set: an unchanged chain costs one pass
        subnets_of: dict[str, list[int]] = defaultdict(list)
        for hotkey, netuid in current:
            if hotkey in hotkeys and (hotkey, netuid) in previous:
                subnets_of[hotkey].append(netuid)
        for hotkey, netuid in sorted(((h, n) for h, ns in subnets_of.items() for n in ns), key=lambda k: (k[1], k[0])):
            record, old = current[(hotkey, netuid)], previous[(hotkey, netuid)]
            events = list(by_key.get((hotkey, netuid), ()))
            if not events and by_key.get((hotkey, None)):
                # A runtime whose ChildKeyTakeSet has no netuid: the hotkey's subnet, if only one can be meant.
                candidates = [n for n in subnets_of[hotkey] if (hotkey, n) in moved]
                if candidates == [netuid] or (not candidates and subnets_of[hotkey] == [netuid]):
                    events = by_key[(hotkey, None)]
            take = old.take
            floor = self.window.take_floors.get(netuid, 0)
            for e in events:
                new = take_ratio(max(e.numbers[0], floor))
                if abs(new - take) > _TAKE_EPSILON:
                    self.out.append(self._at(e, "take_changed", hotkey, netuid, old=take, new=new))
                take = new
            if abs(take - record.take) > _TAKE_EPSILON:
                net = ChangeEvent(self.window.last, 0.0, "take_changed", hotkey, netuid, old=take, new=record.take)
                self.out.append(self._take_remainder(net, hotkey, netuid))

    def _take_remainder(self, change: ChangeEvent, hotkey: str, netuid: int) -> ChangeEvent:
        """A take that moved with no ChildKeyTakeSet of its own: a minimum raised, else a swap or the range."""
        for e in reversed(self.events):
            if e.name == "MinChildKeyTakeSet" or (e.name == "MinChildKeyTakePerSubnetSet" and netuid in e.netuids):
                return self._placed(change, e)
        return self._remainder(change, (hotkey,), event_driven=True)

    # -- permits and stake: net changes, placed --------------------------------

    def _permit(self, change: ChangeEvent) -> ChangeEvent:
        record = self.state.validators.get((change.hotkey, change.netuid)) or self.previous.validators.get((change.hotkey, change.netuid))
        uid = record.uid if record is not None else None
        old_record = self.previous.validators.get((change.hotkey, change.netuid))
        old_uid = old_record.uid if old_record is not None else uid
        for e in reversed(self.events):
            if e.name == "NeuronRegistered" and change.netuid in e.netuids and e.numbers and e.numbers[0] in (uid, old_uid):
                if change.kind == "permit_lost":  # the uid was replaced: the runtime clears its permit
                    return self._placed(change, e)
        epochs = self.window.epochs.get(change.netuid, ())
        if epochs:
            last = epochs[-1]
            ranged = {"block_from": epochs[0]} if len(epochs) > 1 else {}
            placed = replace(change, block=last, time=self.window.time_of(last), cause="epoch", extrinsic=None, **ranged)
            # The epoch decided it; a change of the rule before it (k, the threshold, the owner) is why.
            for e in reversed(self.events):
                if e.block <= last and (e.name == "StakeThresholdSet" or (
                        e.name in ("MaxAllowedValidatorsSet", "SubnetOwnerHotkeySet") and change.netuid in e.netuids)):
                    return replace(placed, cause=e.name)
            return placed
        return self._remainder(change, (change.hotkey,), event_driven=False)

    def _stake(self, change: ChangeEvent) -> ChangeEvent:
        involved = {change.hotkey}
        if change.kind == "stake_weight_moved":
            involved |= self._parents().get((change.hotkey, change.netuid), set())
        for e in reversed(self.events):
            if e.name in _STAKE_EVENTS and involved & set(e.accounts) and {change.netuid, 0} & set(e.netuids):
                return self._placed(change, e)
            # A stake weight also moves when a parent's child set changes (what the child inherits).
            if (change.kind == "stake_weight_moved" and e.name == "SetChildren" and e.accounts
                    and e.accounts[0] in involved and change.netuid in e.netuids):
                return self._placed(change, e)
        cause = "suspension" if involved & self.suspended else None
        return self._remainder(change, involved, event_driven=False, cause=cause)


def _by_parent(edges: dict, parents: set) -> dict[tuple[str, int], dict[str, int]]:
    """(parent, netuid) -> {child: proportion} for the parents asked about."""
    grouped: dict[tuple[str, int], dict[str, int]] = defaultdict(dict)
    for (parent, child, netuid), proportion in edges.items():
        if (parent, netuid) in parents:
            grouped[(parent, netuid)][child] = proportion
    return grouped


def _edge_changes(parent: str, before: dict[str, int], after: dict[str, int]):
    """(kind, child, fields) taking one child set of a parent to another."""
    for child in (*after, *(c for c in before if c not in after)):
        change = edge_change(parent, child, before.get(child), after.get(child))
        if change is not None:
            yield change[0], child, change[1]
