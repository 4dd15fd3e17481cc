"""Read the chain's events (``System.Events``) of every block since history last recorded, in bulk.

Two requests cover a normal refresh: ``chain_getBlockHash`` with the list of
block numbers, and ``state_queryStorage`` over the range for ``System.Events``
and ``Timestamp.Now`` (a node answers the first block's values and then only
the values that changed, so a block whose events repeat the previous block's
exactly is not listed: its events are those again). Long ranges go in chunks.

A pruning node keeps the state of about 256 blocks: a range reaching further
back fails as "state discarded", and what lies before the oldest readable
block becomes the window's gap (history then records net changes there,
flagged). Any other failure fails the read, like every other read: a gap is
only ever what the endpoint no longer has.

Only the SubtensorModule events history can use are kept, each reduced to its
fields sorted by type (``ChildKeyTakeSet`` gained a netuid field in newer
runtimes: the metadata, not a fixed layout, says where each field is).
"""

from __future__ import annotations

import re
import weakref
from typing import Any, Optional, Protocol, Sequence

from bittensor._transport.errors import StateDiscardedError

from exporter.chain.storage import gather_or_cancel
from exporter.snapshot.causes import EVENT_CAUSES
from exporter.snapshot.model import ChainEvent, EventWindow, frozen
from exporter.snapshot.read_rules import InvalidRead

PALLET = "SubtensorModule"
RELEVANT = frozenset(EVENT_CAUSES)  # the events history attributes changes to
RANGE_CHUNK = 64  # blocks per state_queryStorage: about 64 blocks of mainnet events, well under 15 MiB
MAX_EVENTS_BYTES = 1 << 23  # one block's System.Events; mainnet blocks hold tens of KB
_HEX = re.compile(r"0x(?:[0-9a-fA-F]{2})*")
_LAYOUTS: "weakref.WeakKeyDictionary[Any, dict[str, tuple[str, ...]]]" = weakref.WeakKeyDictionary()
_RANGE_REFUSED: "weakref.WeakKeyDictionary[Any, bool]" = weakref.WeakKeyDictionary()
# How nodes refuse an unsafe or unknown method (-32601): "RPC call is unsafe to be called externally",
# "Method not found".
_REFUSED = ("unsafe", "method not found", "-32601", "not allowed")
_PRUNED = ("state already discarded", "state discarded")  # Substrate's words, and the SDK's


class EventSource(Protocol):
    """What reading events needs of a storage reader pinned to the head (see storage.py)."""

    def raw_key(self, pallet: str, item: str) -> str: ...
    def event_layouts(self) -> dict[str, tuple[str, ...]]: ...
    def decode_events(self, raw: bytes) -> list[dict]: ...
    async def block_hashes(self, numbers: Sequence[int]) -> list[Optional[str]]: ...
    async def storage_changes(self, keys: list[str], hashes: list[str]) -> list[dict]: ...


def is_pruned(error: BaseException) -> bool:
    """Whether the endpoint said it no longer keeps that block's state (the SDK raises
    StateDiscardedError for Substrate's "UnknownBlock: State already discarded for ...")."""
    if isinstance(error, StateDiscardedError):
        return True
    text = str(error).lower()
    return any(marker in text for marker in _PRUNED)


async def read_window(source: EventSource, since: Optional[int], block: int, limit: int) -> Optional[EventWindow]:
    """Events of ``since + 1``..``block``, at most the last ``limit`` blocks of them; None without ``since``."""
    if since is None or since >= block:
        return None
    first = since + 1
    start = max(first, block - limit + 1)
    numbers = list(range(start, block + 1))
    hashes = await source.block_hashes(numbers)
    if len(hashes) != len(numbers) or not all(isinstance(h, str) and _HEX.fullmatch(h) and len(h) == 66 for h in hashes):
        raise InvalidRead("malformed_answer", f"chain_getBlockHash {start}..{block}: not one hash per block")
    by_hash = dict(zip(hashes, numbers))
    events_key = source.raw_key("System", "Events")
    time_key = source.raw_key("Timestamp", "Now")
    chunks = [numbers[i : i + RANGE_CHUNK] for i in range(0, len(numbers), RANGE_CHUNK)]
    read_from = start
    answers: list[tuple[list, int]] = []  # (change sets, the last block they cover)
    # Newest chunk first: once one is pruned, every older one is too.
    for chunk in reversed(chunks):
        try:
            answer = await source.storage_changes([events_key, time_key], hashes[chunk[0] - start : chunk[-1] - start + 1])
        except Exception as error:  # noqa: BLE001 - only "state discarded" becomes a gap
            if not is_pruned(error):
                raise
            read_from, answer = await _oldest_readable(source, chunk, hashes, start, [events_key, time_key])
            if answer is not None:
                answers.append((answer, chunk[-1]))
            break
        answers.append((answer, chunk[-1]))
    layouts = source.event_layouts()
    events: list[ChainEvent] = []
    times: dict[int, float] = {}
    for answer, last in reversed(answers):
        _walk(answer, last, by_hash, events_key, time_key, layouts, source, events, times)
    return EventWindow(first=first, read_from=read_from, last=block, events=tuple(events), times=frozen(times))


async def _oldest_readable(source: EventSource, chunk: list[int], hashes: list[str], start: int, keys: list[str]):
    """Bisect a chunk that reaches into pruned state for its oldest readable block and read from there."""
    lo, hi = 0, len(chunk)  # chunk[hi:] readable as far as known; chunk[:lo] pruned
    best = None
    while lo < hi:
        mid = (lo + hi) // 2
        try:
            answer = await source.storage_changes(keys, hashes[chunk[mid] - start : chunk[-1] - start + 1])
        except Exception as error:  # noqa: BLE001
            if not is_pruned(error):
                raise
            lo = mid + 1
        else:
            best, hi = (chunk[mid], answer), mid
    if best is None:
        return chunk[-1] + 1, None
    return best


def _walk(answer, last, by_hash, events_key, time_key, layouts, source, events, times) -> None:
    """Every block of one range answer up to ``last``, in order; a block not listed repeats the
    previous block's values (nodes list only blocks where a value changed)."""
    if not isinstance(answer, list):
        raise InvalidRead("malformed_answer", "state_queryStorage: not a list of change sets")
    current: dict[str, Optional[str]] = {}
    last_block = None
    for change_set in answer:
        if not isinstance(change_set, dict) or change_set.get("block") not in by_hash:
            raise InvalidRead("malformed_answer", "state_queryStorage: a change set for a block not asked about")
        number = by_hash[change_set["block"]]
        if last_block is not None and number <= last_block:
            raise InvalidRead("malformed_answer", "state_queryStorage: change sets out of block order")
        if last_block is not None:
            for repeated in range(last_block + 1, number):
                _take(repeated, current, events_key, time_key, layouts, source, events, times)
        for pair in change_set.get("changes") or []:
            if not (isinstance(pair, list) and len(pair) == 2 and pair[0] in (events_key, time_key)):
                raise InvalidRead("malformed_answer", "state_queryStorage: a change of a key not asked for")
            value = pair[1]
            if value is not None and (not isinstance(value, str) or not _HEX.fullmatch(value) or len(value) > 2 + 2 * MAX_EVENTS_BYTES):
                raise InvalidRead("malformed_answer", "state_queryStorage: a value that is not bounded hex")
            current[pair[0]] = value
        _take(number, current, events_key, time_key, layouts, source, events, times)
        last_block = number
    if last_block is not None:
        for repeated in range(last_block + 1, last + 1):
            _take(repeated, current, events_key, time_key, layouts, source, events, times)


def _take(block, current, events_key, time_key, layouts, source, events, times) -> None:
    now = current.get(time_key)
    if now:
        times[block] = int.from_bytes(bytes.fromhex(now[2:]), "little") / 1000
    raw = current.get(events_key)
    if not raw:
        return
    try:
        records = source.decode_events(bytes.fromhex(raw[2:]))
    except Exception as error:  # noqa: BLE001 - bytes the runtime's type does not decode
        raise InvalidRead("undecodable_answer", f"System.Events at block {block}: {str(error)[:200]}") from error
    for index, record in enumerate(records):
        event = _event(block, index, record, layouts)
        if event is not None:
            events.append(event)


def _event(block: int, index: int, record: Any, layouts: dict[str, tuple[str, ...]]) -> Optional[ChainEvent]:
    if not isinstance(record, dict) or record.get("module_id") != PALLET or record.get("event_id") not in RELEVANT:
        return None
    name = record["event_id"]
    attributes = record.get("attributes")
    if isinstance(attributes, dict):
        values = list(attributes.values())
    elif isinstance(attributes, (tuple, list)):
        values = list(attributes)
    else:
        values = [attributes]
    types = layouts.get(name, ())
    accounts, netuids, numbers, children = [], [], [], ()
    for position, value in enumerate(values):
        type_name = types[position] if position < len(types) else ""
        if "NetUid" in type_name:
            netuids.append(int(value))
        elif isinstance(value, str):
            accounts.append(value)
        elif isinstance(value, bool):
            numbers.append(int(value))
        elif isinstance(value, int):
            numbers.append(value)
        elif isinstance(value, (list, tuple)) and all(isinstance(v, (list, tuple)) and len(v) == 2 for v in value):
            children = tuple((int(q), str(c)) for q, c in value)
    extrinsic = record.get("extrinsic_idx") if record.get("phase") == "ApplyExtrinsic" else None
    return ChainEvent(block, index, extrinsic, name, tuple(accounts), tuple(netuids), tuple(numbers), children)


def event_layouts(registry_types: list[dict]) -> dict[str, tuple[str, ...]]:
    """Variant name -> its fields' type names, for the SubtensorModule event enum of a runtime's registry."""
    for entry in registry_types:
        kind = entry.get("type", {})
        path = kind.get("path") or []
        if path[-3:] == ["pallet_subtensor", "pallet", "Event"] or (path and path[0] == "pallet_subtensor" and path[-1] == "Event"):
            variants = kind.get("def", {}).get("variant", {}).get("variants", [])
            return {v["name"]: tuple(f.get("typeName") or "" for f in v.get("fields", [])) for v in variants}
    return {}


class ReaderEventSource:
    """The ``EventSource`` of a storage reader pinned to the head (exporter/chain/storage.py)."""

    def __init__(self, reader: Any):
        self._reader = reader

    def raw_key(self, pallet: str, item: str) -> str:
        codec = self._reader.codec
        return "0x" + codec.storage_key(codec.storage_entry(pallet, item), []).hex()

    def event_layouts(self) -> dict[str, tuple[str, ...]]:
        codec = self._reader.codec
        if codec not in _LAYOUTS:  # walking the registry takes tens of ms: once per runtime
            _LAYOUTS[codec] = event_layouts(codec.registry_types())
        return _LAYOUTS[codec]

    def decode_events(self, raw: bytes) -> list[dict]:
        codec = self._reader.codec
        return codec.decode(codec.storage_entry("System", "Events").value_type, raw)

    async def block_hashes(self, numbers: Sequence[int]) -> list[Optional[str]]:
        answer = await self._reader.rpc("chain_getBlockHash", [list(numbers)])
        return answer if isinstance(answer, list) else []

    async def storage_changes(self, keys: list[str], hashes: list[str]) -> list[dict]:
        """Change sets of ``keys`` over the blocks ``hashes`` (consecutive): one ``state_queryStorage``,
        or, where the endpoint refuses it (Substrate counts it unsafe: ``--rpc-methods safe``), one
        ``state_queryStorageAt`` a block, in parallel."""
        conn = self._reader.connection
        if conn not in _RANGE_REFUSED:
            try:
                return await self._reader.rpc("state_queryStorage", [keys, hashes[0], hashes[-1]])
            except Exception as error:  # noqa: BLE001 - only a refusal falls back
                if is_pruned(error) or not _is_refused(error):
                    raise
                _RANGE_REFUSED[conn] = True  # this connection's endpoint: ask block by block from now on
        answers = await gather_or_cancel(*(self._reader.rpc("state_queryStorageAt", [keys, h]) for h in hashes))
        return [change_set for answer in answers for change_set in (answer if isinstance(answer, list) else [answer])]


def _is_refused(error: BaseException) -> bool:
    text = str(error).lower()
    return any(marker in text for marker in _REFUSED)
