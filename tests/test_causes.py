"""Placing each change at its block with its cause: a pure function of two states and the events between."""

from __future__ import annotations

from dataclasses import replace

from exporter.snapshot.causes import attribute
from exporter.snapshot.changes import ChangeEvent, HistoryState, ValidatorRecord
from exporter.snapshot.model import ChainEvent, EventWindow

P, C, D, V = "5Parent", "5Child", "5Other", "5Validator"
HALF = (2**64 - 1) // 2
FULL = 2**64 - 1


def record(take: float = 0.0, uid: int = 3, permit: bool = True, own: int = 100, weight: float = 100.0) -> ValidatorRecord:
    return ValidatorRecord(uid, permit, own, weight, take, own, weight)


def window(*events: ChainEvent, first: int = 101, read_from: int = 101, last: int = 110, epochs=None, floors=None) -> EventWindow:
    return EventWindow(first=first, read_from=read_from, last=last, events=events,
                       times={b: 1000.0 + 12 * b for b in range(read_from, last + 1)},
                       epochs=epochs or {}, take_floors=floors or {})


def event(block: int, name: str, *, extrinsic=1, index=0, accounts=(), netuids=(), numbers=(), children=()) -> ChainEvent:
    return ChainEvent(block, index, extrinsic, name, tuple(accounts), tuple(netuids), tuple(numbers), tuple(children))


def state(validators=None, edges=None, pending=None) -> HistoryState:
    return HistoryState(validators or {}, edges or {}, pending or {})


def brief(changes):
    return [(c.kind, c.hotkey, c.netuid, c.block, c.cause, c.old, c.new) for c in changes]


def take(u16: int) -> float:
    return u16 / 65535


def test_four_take_changes_in_four_blocks_are_four_events_at_their_blocks():
    before = state({(V, 1): record(take(0))})
    after = state({(V, 1): record(take(400))})
    events = [event(101 + i, "ChildKeyTakeSet", accounts=[V], netuids=[1], numbers=[100 * (i + 1)], extrinsic=i + 2)
              for i in range(4)]
    net = [ChangeEvent(110, 0.0, "take_changed", V, 1, old=take(0), new=take(400))]
    changes = attribute(before, after, net, window(*events))
    assert brief(changes) == [
        ("take_changed", V, 1, 101 + i, "ChildKeyTakeSet", take(100 * i), take(100 * (i + 1))) for i in range(4)
    ]
    assert [c.extrinsic for c in changes] == [2, 3, 4, 5]
    assert changes[0].time == 1000.0 + 12 * 101


def test_a_reverted_take_is_two_events_though_nothing_changed_net():
    before = after = state({(V, 1): record(take(100))})
    events = [event(102, "ChildKeyTakeSet", accounts=[V], netuids=[1], numbers=[900]),
              event(105, "ChildKeyTakeSet", accounts=[V], netuids=[1], numbers=[100])]
    changes = attribute(before, after, [], window(*events))
    assert brief(changes) == [
        ("take_changed", V, 1, 102, "ChildKeyTakeSet", take(100), take(900)),
        ("take_changed", V, 1, 105, "ChildKeyTakeSet", take(900), take(100)),
    ]


def test_a_take_event_without_netuid_is_placed_on_the_one_subnet_whose_take_moved():
    before = state({(V, 1): record(take(0)), (V, 2): record(take(50))})
    after = state({(V, 1): record(take(300)), (V, 2): record(take(50))})
    net = [ChangeEvent(110, 0.0, "take_changed", V, 1, old=0.0, new=take(300))]
    changes = attribute(before, after, net, window(event(104, "ChildKeyTakeSet", accounts=[V], numbers=[300])))
    assert brief(changes) == [("take_changed", V, 1, 104, "ChildKeyTakeSet", 0.0, take(300))]


def test_the_take_floor_counts_and_a_raised_subnet_minimum_is_the_cause():
    before = state({(V, 1): record(take(0))})
    after = state({(V, 1): record(take(1000))})
    w = window(event(103, "MinChildKeyTakePerSubnetSet", netuids=[1], numbers=[1000], extrinsic=None), floors={1: 1000})
    changes = attribute(before, after, [ChangeEvent(110, 0.0, "take_changed", V, 1, old=0.0, new=take(1000))], w)
    assert brief(changes) == [("take_changed", V, 1, 103, "MinChildKeyTakePerSubnetSet", 0.0, take(1000))]


def test_a_set_scheduled_then_applied_is_scheduled_applied_and_its_edges_at_their_blocks():
    before = state()
    before = replace(before, validators={(V, 9): record()})  # not empty: not history's first refresh
    after = state({(V, 9): record()}, edges={(P, C, 1): HALF, (P, D, 1): HALF})
    events = [
        event(102, "SetChildrenScheduled", accounts=[P], netuids=[1], numbers=[104], children=[(HALF, C), (HALF, D)]),
        event(106, "SetChildren", extrinsic=None, accounts=[P], netuids=[1], children=[(HALF, C), (HALF, D)]),
    ]
    changes = attribute(before, after, [], window(*events))
    assert [(c.kind, c.hotkey, c.block, c.cause, c.extrinsic) for c in changes] == [
        ("pending_scheduled", P, 102, "SetChildrenScheduled", 1),
        ("pending_applied", P, 106, "SetChildren", None),
        ("edge_added", C, 106, "SetChildren", None),
        ("edge_added", D, 106, "SetChildren", None),
    ]
    assert changes[0].new == {"children": [[0.5, C], [0.5, D]], "cooldown_block": 104}


def test_a_parent_that_drops_its_child_and_takes_it_back_is_seen_both_times():
    before = after = state({(V, 9): record()}, edges={(P, C, 1): FULL})
    events = [
        event(103, "SetChildren", accounts=[P], netuids=[1], children=[(FULL, D)]),
        event(107, "SetChildren", accounts=[P], netuids=[1], children=[(FULL, C)]),
    ]
    changes = attribute(before, after, [], window(*events))
    assert [(c.kind, c.hotkey, c.block) for c in changes] == [
        ("edge_added", D, 103), ("edge_removed", C, 103), ("edge_added", C, 107), ("edge_removed", D, 107),
    ]


def test_a_pending_set_gone_at_its_epoch_without_setchildren_was_dropped_then():
    pending = (((FULL, C),), 104)
    before = state({(V, 9): record()}, pending={(P, 1): pending})
    after = state({(V, 9): record()})
    changes = attribute(before, after, [], window(epochs={1: (103, 108)}))
    assert brief(changes) == [("pending_dropped", P, 1, 108, "dropped_at_apply", {"children": [[1.0, C]], "cooldown_block": 104}, None)]


def test_a_permit_lost_at_the_epoch_and_one_lost_to_a_replaced_uid():
    before = state({(V, 1): record(uid=3), (D, 1): record(uid=4)})
    after = state({(V, 1): record(uid=3, permit=False)})
    net = [ChangeEvent(110, 0.0, "permit_lost", V, 1, old=True, new=False),
           ChangeEvent(110, 0.0, "permit_lost", D, 1, old=True, new=False)]
    registered = event(105, "NeuronRegistered", netuids=[1], numbers=[4], accounts=["5Newcomer"])
    changes = attribute(before, after, net, window(registered, epochs={1: (107,)}))
    assert brief(changes) == [
        ("permit_lost", V, 1, 107, "epoch", True, False),
        ("permit_lost", D, 1, 105, "NeuronRegistered", True, False),
    ]


def test_a_change_with_no_event_in_a_window_with_a_gap_is_flagged_with_its_range():
    before = state({(V, 1): record(take(0))})
    after = state({(V, 1): record(take(500))})
    net = [ChangeEvent(110, 0.0, "take_changed", V, 1, old=0.0, new=take(500))]
    changes = attribute(before, after, net, window(first=50, read_from=101))
    assert [(c.kind, c.block, c.block_from, c.cause) for c in changes] == [("take_changed", 100, 50, "gap")]


def test_a_change_no_event_explains_is_said_so_with_the_range_read():
    before = state({(V, 1): record(take(0))})
    after = state({(V, 1): record(take(500))})
    net = [ChangeEvent(110, 0.0, "take_changed", V, 1, old=0.0, new=take(500))]
    changes = attribute(before, after, net, window())
    assert [(c.block, c.block_from, c.cause) for c in changes] == [(110, 101, "no_event")]


def test_a_hotkey_swap_explains_a_take_reset():
    before = state({(V, 1): record(take(900))})
    after = state({(V, 1): record(take(0))})
    swap = event(104, "HotkeySwapped", accounts=["5Coldkey", "5OldHotkey", V])
    changes = attribute(before, after, [ChangeEvent(110, 0.0, "take_changed", V, 1, old=take(900), new=0.0)], window(swap))
    assert brief(changes) == [("take_changed", V, 1, 104, "HotkeySwapped", take(900), 0.0)]


def test_a_stake_move_takes_the_last_stake_event_of_the_hotkey_or_a_parent():
    before = state({(C, 1): record()}, edges={(P, C, 1): FULL})
    after = before
    net = [ChangeEvent(110, 0.0, "stake_weight_moved", C, 1, old=100.0, new=300.0)]
    events = [event(102, "StakeAdded", accounts=["5Coldkey", P], netuids=[1], numbers=[10, 10, 0]),
              event(104, "StakeRemoved", accounts=["5Coldkey", D], netuids=[1], numbers=[10, 10, 0])]
    changes = attribute(before, after, net, window(*events))
    assert brief(changes) == [("stake_weight_moved", C, 1, 102, "StakeAdded", 100.0, 300.0)]


def test_without_a_window_the_net_changes_stand():
    net = [ChangeEvent(110, 0.0, "take_changed", V, 1, old=0.0, new=0.1)]
    assert attribute(state({(V, 1): record()}), state({(V, 1): record(0.1)}), net, None) == net


def test_a_permit_an_epoch_took_after_k_was_lowered_names_the_change_of_k():
    before = state({(V, 1): record(uid=3)})
    after = state({(V, 1): record(uid=3, permit=False)})
    net = [ChangeEvent(110, 0.0, "permit_lost", V, 1, old=True, new=False)]
    lowered = event(102, "MaxAllowedValidatorsSet", netuids=[1], numbers=[8])
    elsewhere = event(103, "MaxAllowedValidatorsSet", netuids=[2], numbers=[8])
    changes = attribute(before, after, net, window(lowered, elsewhere, epochs={1: (107,)}))
    assert [(c.block, c.cause, c.extrinsic) for c in changes] == [(107, "MaxAllowedValidatorsSet", None)]
