"""The activity changes history records: a uid replaced, a delegate take changed, a validator the
chain marked inactive or active again. A pure function of the recorded state, the snapshot and the
chain's events since.

- ``uid_replaced``: the uid a tracked validator held is now another hotkey's (a registration
  replaced it) or nobody's, or the validator holds another uid: its own kind, apart from
  ``permit_lost`` (a replaced uid loses its permit too, since runtimes of 2026-05 at once).
  old: the uid; new: the hotkey now at it (None: none). At ``NeuronRegistered`` of that uid.
- ``delegate_take_changed``: ``Delegates`` of a tracked hotkey changed; netuid 0 (the take applies
  on every subnet). At ``TakeDecreased`` / ``TakeIncreased``.
- ``became_inactive`` / ``became_active``: the chain's ``Active`` flag of a tracked validator
  flipped. At the subnet's last epoch in the window (cause ``epoch``), where it was decided.

Each change the events do not place is at the last block read, cause ``no_event`` (``gap`` when
part of the window could not be read), as ``causes`` does for the others.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

from exporter.snapshot.changes import ChangeEvent, HistoryState
from exporter.snapshot.model import ChainEvent, EventWindow, Snapshot
from exporter.snapshot.units import take_ratio

ACTIVITY_KINDS = ("uid_replaced", "delegate_take_changed", "became_inactive", "became_active")
TAKE_EVENTS = ("TakeDecreased", "TakeIncreased")


def with_activity_changes(snapshot: Snapshot, previous: HistoryState, state: HistoryState,
                          window: Optional[EventWindow]) -> tuple[HistoryState, list[ChangeEvent]]:
    """``state`` with the activity it records, and the activity changes from ``previous``."""
    activity = snapshot.activity
    if activity is None:  # not read: what was recorded stands
        return replace(state, active=previous.active, delegate_takes=previous.delegate_takes), []
    active = dict(activity.tracked_active)
    tracked_hotkeys = {h for h, _ in state.validators}
    takes = {h: t for h, t in activity.tracked_takes.items() if h in tracked_hotkeys}
    new = replace(state, active=active, delegate_takes=takes)
    if previous.is_empty:
        return new, []
    block, when = snapshot.chain.block, snapshot.chain.timestamp_seconds
    events: list[ChangeEvent] = []
    place = _Placer(window, block, when)
    for (hotkey, netuid), old in previous.validators.items():
        if old.uid is None or netuid == 0 or netuid not in activity.mechanisms:
            continue  # a subnet no longer there (dissolved): its permits lost say it
        now = state.validators.get((hotkey, netuid))
        if now is not None and now.uid == old.uid:
            continue
        holder = activity.uid_hotkeys.get((netuid, old.uid))
        if holder == hotkey:
            continue  # still at its uid: no longer tracked for another reason (a permit lost)
        events.append(place.registration(ChangeEvent(block, when, "uid_replaced", hotkey, netuid, old=old.uid, new=holder)))
    for key, flag in active.items():
        before = previous.active.get(key)
        if before is not None and before != flag:
            kind = "became_active" if flag else "became_inactive"
            events.append(place.epoch(ChangeEvent(block, when, kind, *key, old=before, new=flag)))
    for hotkey, take in takes.items():
        before = previous.delegate_takes.get(hotkey)
        if before is not None and before != take:
            change = ChangeEvent(block, when, "delegate_take_changed", hotkey, 0, old=take_ratio(before), new=take_ratio(take))
            events.append(place.take(change))
    return new, events


class _Placer:
    """Each change at the chain event or epoch that explains it, else the window's remainder."""

    def __init__(self, window: Optional[EventWindow], block: int, when: float):
        self.window = window
        self.events: list[ChainEvent] = sorted(window.events, key=lambda e: (e.block, e.index)) if window else []

    def _at(self, change: ChangeEvent, event: ChainEvent) -> ChangeEvent:
        assert self.window is not None
        return replace(change, block=event.block, time=self.window.time_of(event.block), cause=event.name, extrinsic=event.extrinsic)

    def _remainder(self, change: ChangeEvent) -> ChangeEvent:
        w = self.window
        if w is None:
            return change
        cause = "gap" if w.gap is not None else "no_event"
        return replace(change, block=w.last, time=w.time_of(w.last), cause=cause, block_from=w.first)

    def registration(self, change: ChangeEvent) -> ChangeEvent:
        for event in reversed(self.events):
            if event.name == "NeuronRegistered" and change.netuid in event.netuids and event.numbers[:1] == (change.old,):
                return self._at(change, event)
        return self._remainder(change)

    def take(self, change: ChangeEvent) -> ChangeEvent:
        for event in reversed(self.events):
            if event.name in TAKE_EVENTS and change.hotkey in event.accounts:
                return self._at(change, event)
        return self._remainder(change)

    def epoch(self, change: ChangeEvent) -> ChangeEvent:
        w = self.window
        epochs = w.epochs.get(change.netuid, ()) if w is not None else ()
        if not epochs:
            return self._remainder(change)
        last = epochs[-1]
        ranged = {"block_from": epochs[0]} if len(epochs) > 1 else {}
        return replace(change, block=last, time=w.time_of(last), cause="epoch", **ranged)  # type: ignore[union-attr]
