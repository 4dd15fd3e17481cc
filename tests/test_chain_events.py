"""Reading the chain's events of a block range: literal answers in, an EventWindow (or a refusal) out."""

from __future__ import annotations

import asyncio

import pytest

from bittensor._transport.errors import StateDiscardedError

from exporter.chain.events import read_window
from exporter.snapshot.read_rules import InvalidRead

EVENTS, NOW = "0xevents", "0xnow"
LAYOUTS = {"ChildKeyTakeSet": ("T::AccountId", "NetUid", "u16"), "SetChildren": ("T::AccountId", "NetUid", "Vec<(u64, T::AccountId)>")}


def hash_of(n: int) -> str:
    return "0x" + f"{n:064x}"


def now(ms: int) -> str:
    return "0x" + ms.to_bytes(8, "little").hex()


class Source:
    """Blocks 1..head; ``events[b]`` is the decoded records of block b (encoded as their index here);
    state before ``pruned_before`` is discarded."""

    def __init__(self, head: int, events: dict, pruned_before: int = 0, answer=None):
        self.head, self.events, self.pruned_before, self.answer = head, events, pruned_before, answer
        self.calls: list[tuple[int, int]] = []

    def raw_key(self, pallet: str, item: str) -> str:
        return EVENTS if item == "Events" else NOW

    def event_layouts(self):
        return LAYOUTS

    def decode_events(self, raw: bytes):
        return self.events[int.from_bytes(raw, "big")]

    async def block_hashes(self, numbers):
        return [hash_of(n) for n in numbers]

    async def storage_changes(self, keys, hashes):
        first, last = int(hashes[0], 16), int(hashes[-1], 16)
        assert [int(h, 16) for h in hashes] == list(range(first, last + 1))
        self.calls.append((first, last))
        if first < self.pruned_before:
            raise StateDiscardedError(hashes[0])
        if self.answer is not None:
            return self.answer
        out, previous = [], None
        for b in range(first, last + 1):
            # the same records object in two blocks: the same bytes, so the node does not list the second
            first_with = next((k for k in sorted(self.events) if self.events[k] is self.events.get(b)), None)
            value = "0x" + first_with.to_bytes(4, "big").hex() if b in self.events else None
            changes = [[NOW, now(1000 * b)]]
            if b == first or value != previous:
                changes.append([EVENTS, value])
            previous = value
            out.append({"block": hash_of(b), "changes": changes})
        return out


def take_set(hotkey: str, netuid: int, take: int, extrinsic: int = 1) -> dict:
    return {"phase": "ApplyExtrinsic", "extrinsic_idx": extrinsic, "module_id": "SubtensorModule",
            "event_id": "ChildKeyTakeSet", "attributes": (hotkey, netuid, take)}


def read(source: Source, since, head, limit=256):
    return asyncio.run(read_window(source, since, head, limit))


def test_events_of_each_block_since_the_last_recorded_one_with_their_times():
    source = Source(10, {7: [take_set("5A", 1, 100)], 9: [take_set("5A", 1, 200, extrinsic=3),
                                                          {"module_id": "System", "event_id": "ExtrinsicSuccess"}]})
    window = read(source, since=5, head=10)
    assert (window.first, window.read_from, window.last, window.gap) == (6, 6, 10, None)
    assert [(e.block, e.extrinsic, e.name, e.accounts, e.netuids, e.numbers) for e in window.events] == [
        (7, 1, "ChildKeyTakeSet", ("5A",), (1,), (100,)), (9, 3, "ChildKeyTakeSet", ("5A",), (1,), (200,)),
    ]
    assert window.times[8] == 8.0 and window.time_of(3) == 10.0 - 7 * 12
    assert source.calls == [(6, 10)]  # one range request


def test_without_a_last_block_nothing_is_read():
    source = Source(10, {})
    assert read(source, since=None, head=10) is None and read(source, since=10, head=10) is None
    assert source.calls == []


def test_a_block_not_listed_repeats_the_events_of_the_one_before():
    same = [take_set("5A", 1, 100)]
    source = Source(5, {2: same, 3: same})
    window = read(source, since=1, head=5)
    assert [e.block for e in window.events] == [2, 3]


def test_a_long_range_goes_in_chunks_and_a_pruned_start_becomes_the_gap():
    source = Source(300, {250: [take_set("5A", 1, 1)]}, pruned_before=120)
    window = read(source, since=10, head=300)
    assert (window.first, window.read_from, window.gap) == (11, 120, (11, 119))
    assert [e.block for e in window.events] == [250]
    assert 120 in window.times and 119 not in window.times


def test_only_the_last_limit_blocks_are_read():
    window = read(Source(1000, {}), since=10, head=1000, limit=100)
    assert (window.first, window.read_from) == (11, 901)


@pytest.mark.parametrize("answer", [
    "not a list",
    [{"block": hash_of(999), "changes": []}],  # a block not asked about
    [{"block": hash_of(3), "changes": [["0xother", None]]}],  # a key not asked for
    [{"block": hash_of(3), "changes": [[EVENTS, "0xzz"]]}],  # not hex
    [{"block": hash_of(4), "changes": []}, {"block": hash_of(3), "changes": []}],  # out of order
])
def test_an_answer_the_chain_could_not_give_is_refused(answer):
    with pytest.raises(InvalidRead):
        read(Source(5, {}, answer=answer), since=2, head=5)


def test_any_other_failure_fails_the_read_instead_of_inventing_a_gap():
    class Failing(Source):
        async def storage_changes(self, keys, hashes):
            raise ConnectionError("reset by peer")

    with pytest.raises(ConnectionError):
        read(Failing(5, {}), since=2, head=5)


def test_blocks_after_the_last_listed_one_repeat_its_events():
    """A node lists a block only where a value changed: blocks after the last listed one, up to the
    end of the range asked, hold the same events again."""
    answer = [{"block": hash_of(3), "changes": [[EVENTS, "0x00000003"], [NOW, now(3000)]]}]
    window = read(Source(5, {3: [take_set("5A", 1, 100)]}, answer=answer), since=2, head=5)
    assert [e.block for e in window.events] == [3, 4, 5]
