"""Bulk storage reads pinned to one block: many keys per request, few round trips.

Three shapes cover everything the exporter needs:

- ``values``: several plain items or single keys in one ``state_queryStorageAt``;
- ``batch``: one map at many known keys, 1,000 keys a request, chunks in parallel;
- ``scan``: a whole map (or a prefix of it). Nodes cap ``state_getKeysPaged`` at
  1,000 keys, so a big map is split into key ranges scanned in parallel, and each
  page's values are fetched while the next page's keys are listed.

Every request goes through one semaphore, so the configured number of requests
in flight is a hard cap however the reads are combined. A read that fails
cancels its other requests before the error propagates: nothing it started
keeps paging in the background.

Nothing an endpoint answers is taken on trust (``InvalidRead`` otherwise, as
soon as the answer arrives): a ``state_queryStorageAt`` answer is for the
block asked about and holds every key asked for and no other; a key page is a
list of at most the keys asked for, strictly ascending, after the start key
and under the prefix; every listed key has a value; no value is larger than
any item the exporter reads can be; and a scan stops as soon as it has listed
more keys than its cap, so what an endpoint sends costs bounded memory.
"""

from __future__ import annotations

import asyncio
import re
from itertools import chain, compress, repeat
from operator import is_, itemgetter
from typing import Any, Optional, Sequence

from bittensor._transport.codec import RuntimeCodec
from bittensor._transport.interface import SubstrateConnection
from bittensor._transport.storage import decode_storage_values

from exporter.snapshot.validate import InvalidRead

PAGE_SIZE = 1000  # the node-side cap on state_getKeysPaged
# Keys per state_queryStorageAt of a batch. Nodes cap that call only by the
# JSON-RPC request and response sizes (15 MiB by default); 2,500 keys are
# about 0.5 MB each way. A refresh reads every uid's hotkey and stake
# (~90,000 keys at mainnet scale), so this halves its requests against 1,000.
QUERY_BATCH = 2500
SUBTENSOR = "SubtensorModule"
# The largest value read is a ValidatorPermit of MaxAllowedUids (<= 4096) bools;
# anything past 64 KiB is not one of the exporter's items.
MAX_VALUE_BYTES = 1 << 16
_HEX = re.compile(r"0x(?:[0-9a-fA-F]{2})*")


class KeyCache:
    """Hex storage keys already built, by item and params, for one runtime codec.

    A mainnet refresh asks ~96,000 keys by params, nearly all of them asked by the refresh
    before (the same hotkeys and uids), and building them (SCALE-encoding the params,
    hashing, hex) took ~350 ms of its ~2 s of read CPU; finding them here takes a tenth.
    An item's keys are dropped at the start of a read when they are more than twice what
    the read before asked (hotkeys gone), so memory follows what is asked; another codec (a
    runtime upgrade, a new connection) starts afresh. A key is a pure function of the codec,
    the item and the params.
    """

    def __init__(self) -> None:
        self._codec: Optional[RuntimeCodec] = None
        self._keys: dict[tuple[str, str], dict[tuple, str]] = {}
        self._asked: dict[tuple[str, str], int] = {}  # keys asked of each item since start()
        # The last params list asked of each item (the very object) and its keys: a reader
        # asking with the same list again, as a steady refresh does, needs no lookups at all.
        self._last: dict[tuple[str, str], tuple[Sequence[Sequence], list[str]]] = {}

    def start(self, codec: RuntimeCodec) -> None:
        """A new read with ``codec``."""
        if codec is not self._codec:
            self._codec, self._keys, self._last = codec, {}, {}
        for item, keys in list(self._keys.items()):
            if len(keys) > 2 * self._asked.get(item, 0) + 1024:
                del self._keys[item]
        self._asked = {}

    def hex_keys(self, codec: RuntimeCodec, entry: Any, item: tuple[str, str], params_list: Sequence[Sequence]) -> list[str]:
        if codec is not self._codec:
            return _build_keys(codec, entry, params_list)
        last = self._last.get(item)
        if last is not None and last[0] is params_list:
            self._asked[item] = self._asked.get(item, 0) + len(params_list)
            return last[1]
        wanted = list(map(tuple, params_list))
        known = self._keys.setdefault(item, {})
        self._asked[item] = self._asked.get(item, 0) + len(wanted)
        try:
            keys = list(map(known.get, wanted))
        except TypeError:  # params that cannot be a dict key: built every time
            return _build_keys(codec, entry, params_list)
        if None in keys:
            missing = [i for i, key in enumerate(keys) if key is None]
            for i, key in zip(missing, _build_keys(codec, entry, [wanted[i] for i in missing])):
                keys[i] = known[wanted[i]] = key
        self._last[item] = (params_list, keys)  # type: ignore[assignment] - every None was built
        return keys  # type: ignore[return-value]


class ValueCache:
    """Decoded storage values by their raw hex, per item, for one runtime codec.

    Between two refreshes a minute apart nearly every value read is byte for byte what the
    read before got (a hotkey per uid, a stake not moved): decoding it again, with the bytes
    objects it needs, was ~0.25 s of a mainnet read's CPU. A value is a pure function of the
    codec, the item's type and the raw bytes, so a raw value seen before is looked up instead.
    Only immutable results (ints, strings, booleans, None) are kept, so a value handed out
    twice can never be changed through the other. A whole scan (a map's keys and values) that
    listed exactly what the last one did gets the last one's decoded rows, the same list: the
    reader derives its mappings from them and never changes them.

    Memory follows what is read: an item's table is cut back to the last read's values once
    it holds more than twice what one read asks (values that moved), and scans keep only the
    last read's.
    """

    _IMMUTABLE = frozenset({int, str, bool, type(None)})

    def __init__(self) -> None:
        self._codec: Optional[RuntimeCodec] = None
        self._tables: dict[tuple, dict[Optional[str], Any]] = {}  # by item: raw value -> decoded
        self._read: dict[tuple, list[tuple[list, list]]] = {}  # by item: this read's (raws, values)
        self._scans: dict[tuple, tuple[list, list]] = {}  # by scan: the last read's (changes, rows)
        self._next_scans: dict[tuple, tuple[list, list]] = {}

    def start(self, codec: RuntimeCodec) -> None:
        """A new read with ``codec``."""
        if codec is not self._codec:
            self._codec, self._tables, self._scans = codec, {}, {}
        else:
            for item, reads in self._read.items():
                if len(self._tables.get(item, ())) > 2 * sum(len(raws) for raws, _ in reads) + 1024:
                    self._tables[item] = {raw: value for raws, values in reads for raw, value in zip(raws, values)}
            self._scans = self._next_scans
        self._read, self._next_scans = {}, {}

    def decode(self, codec: RuntimeCodec, entry: Any, item: tuple[str, str], raws: list[Optional[str]]) -> list[Any]:
        """The decoded values of ``raws`` (0x-hex or None: the item's default), in order."""
        if codec is not self._codec:
            return decode_storage_values(codec, entry, [_bytes(raw) for raw in raws])
        known = self._tables.setdefault(item, {})
        values = list(map(known.get, raws, repeat(_MISSING)))
        if values.count(_MISSING):
            missing = list(compress(range(len(values)), map(is_, values, repeat(_MISSING))))
            distinct = list(dict.fromkeys([raws[i] for i in missing]))
            fresh = dict(zip(distinct, decode_storage_values(codec, entry, [_bytes(raw) for raw in distinct])))
            for i in missing:
                values[i] = fresh[raws[i]]
            if set(map(type, fresh.values())) - self._IMMUTABLE:
                return values  # a mutable result: decoded every time, never shared
            known.update(fresh)
        self._read.setdefault(item, []).append((raws, values))
        return values

    def decode_map(self, codec: RuntimeCodec, entry: Any, scanned: tuple, changes: list, fixed: int) -> list:
        """``codec.decode_map_changes`` of a scan; the last read's very result (the same list)
        when the scan listed the same keys with the same values. The caller reads it, never
        changes it."""
        if codec is not self._codec:
            return codec.decode_map_changes(entry, changes, fixed=fixed)
        last = self._scans.get(scanned)
        if last is not None and last[0] == changes:
            decoded = last[1]
        else:
            decoded = codec.decode_map_changes(entry, changes, fixed=fixed)
        self._next_scans[scanned] = (changes, decoded)
        return decoded


_MISSING = object()


def _build_keys(codec: RuntimeCodec, entry: Any, params_list: Sequence[Sequence]) -> list[str]:
    return ["0x" + k.hex() for k in codec.storage_key_batch(entry, [list(p) for p in params_list])]


class StorageReader:
    def __init__(
        self,
        conn: SubstrateConnection,
        codec: RuntimeCodec,
        block_hash: str,
        semaphore: asyncio.Semaphore,
        keys: Optional[KeyCache] = None,
        values: Optional[ValueCache] = None,
    ):
        self._conn = conn
        self._codec = codec
        self.block_hash = block_hash
        self._semaphore = semaphore
        self._keys = keys
        self._values = values

    def has_item(self, item: str, pallet: str = SUBTENSOR) -> bool:
        """Whether the connected runtime's metadata declares this storage item."""
        try:
            self._codec.storage_entry(pallet, item)
        except Exception:  # noqa: BLE001 - StorageFunctionNotFound or a core KeyError
            return False
        return True

    async def _rpc(self, method: str, params: list) -> Any:
        async with self._semaphore:
            return await self._conn.rpc_request(method, params)

    async def rpc(self, method: str, params: list) -> Any:
        """Any other request, under the same cap on requests in flight (the answer is the caller's to check)."""
        return await self._rpc(method, params)

    @property
    def codec(self) -> RuntimeCodec:
        return self._codec

    @property
    def connection(self) -> SubstrateConnection:
        return self._conn

    def has_runtime_api(self, api: str, method: str) -> bool:
        """Whether the connected runtime declares ``api.method``."""
        try:
            return method in self._codec.runtime_api_map.get(api, {})
        except Exception:  # noqa: BLE001 - metadata without runtime APIs (V14)
            return False

    async def runtime_call(self, api: str, method: str, params: Sequence[Any]) -> Any:
        """``api.method(*params)`` at the pinned block, decoded; an answer that does not decode is an InvalidRead."""
        spec = self._codec.runtime_api_map[api][method]
        data = b"".join(bytes(self._codec.encode(type_, value)) for (_, type_), value in zip(spec["inputs"], params))
        answer = await self._rpc("state_call", [f"{api}_{method}", "0x" + data.hex(), self.block_hash])
        if not isinstance(answer, str) or not _HEX.fullmatch(answer) or len(answer) > 2 + 2 * MAX_VALUE_BYTES:
            raise InvalidRead("malformed_answer", f"state_call {api}_{method}: not bounded 0x-prefixed hex")
        try:
            return self._codec.decode(spec["output"], bytes.fromhex(answer[2:]))
        except Exception as error:  # noqa: BLE001 - a value the runtime's type does not decode
            raise InvalidRead("undecodable_answer", f"state_call {api}_{method}: {str(error)[:200]}") from error

    async def _query_storage(self, keys: list[str], *, listed: bool = False) -> dict[str, Optional[str]]:
        """Raw values of ``keys`` at the pinned block; ``listed``: keys a page listed, so each has a value."""
        keys = list(dict.fromkeys(keys))  # asked once each, so a key answered twice is the endpoint's doing
        response = await self._rpc("state_queryStorageAt", [keys, self.block_hash])
        return _answered(response, keys, self.block_hash, listed=listed)

    async def _query_values(self, keys: list[str]) -> list[Optional[str]]:
        """Raw values of ``keys`` (distinct) at the pinned block, in their order."""
        response = await self._rpc("state_queryStorageAt", [keys, self.block_hash])
        values = _values_in_order(response, keys, self.block_hash, listed=False)
        if values is None:  # checked key by key, the problem named
            found = _answered(response, keys, self.block_hash, listed=False)
            values = list(map(found.get, keys))
        return values

    async def values(self, reads: Sequence[tuple[str, list]], pallet: str = SUBTENSOR) -> list[Any]:
        """Decoded values of ``(item, params)`` reads, defaults applied, in one request."""
        entries = [self._codec.storage_entry(pallet, item) for item, _ in reads]
        keys = ["0x" + self._codec.storage_key(e, list(p)).hex() for e, (_, p) in zip(entries, reads)]
        raw = await self._query_storage(keys)
        return [
            decode_storage_values(self._codec, entry, [_bytes(raw.get(key))])[0]
            for entry, key in zip(entries, keys)
        ]

    async def batch(self, item: str, params_list: Sequence[list], pallet: str = SUBTENSOR) -> list[Any]:
        """Values of one map at many keys (defaults for missing ones), in input order."""
        if not params_list:
            return []
        entry = self._codec.storage_entry(pallet, item)
        if self._keys is not None:
            keys = self._keys.hex_keys(self._codec, entry, (pallet, item), params_list)
        else:
            keys = _build_keys(self._codec, entry, params_list)
        chunks = [keys[i : i + QUERY_BATCH] for i in range(0, len(keys), QUERY_BATCH)]
        if len(set(keys)) == len(keys):  # the usual batch: values in the order asked, no lookups
            raws = list(chain.from_iterable(await gather_or_cancel(*(self._query_values(chunk) for chunk in chunks))))
        else:
            found: dict[str, Optional[str]] = {}
            for part in await gather_or_cancel(*(self._query_storage(chunk) for chunk in chunks)):
                found.update(part)
            raws = list(map(found.get, keys))
        if self._values is not None:
            return self._values.decode(self._codec, entry, (pallet, item), raws)
        return decode_storage_values(self._codec, entry, [_bytes(raw) for raw in raws])

    async def scan(self, item: str, params: Sequence = (), *, shards: int = 1, max_keys: Optional[int] = None,
                   pallet: str = SUBTENSOR) -> list[tuple[Any, Any]]:
        """Every (key, value) of a map under ``params``, keys decoded past the prefix.

        More than ``max_keys`` keys (over all shards) is an ``InvalidRead``,
        raised as soon as a page crosses it: paging stops there.
        """
        entry = self._codec.storage_entry(pallet, item)
        prefix = "0x" + self._codec.storage_key(entry, list(params)).hex()
        bounds = _shard_bounds(prefix, shards)
        budget = _Budget(item, max_keys)
        pages = await gather_or_cancel(*(self._scan_range(prefix, lo, hi, budget) for lo, hi in bounds))
        changes = [change for page in pages for change in page]
        if self._values is not None:
            return self._values.decode_map(self._codec, entry, (pallet, item, *params), changes, len(params))
        return self._codec.decode_map_changes(entry, changes, fixed=len(params))

    async def _scan_range(self, prefix: str, start: str, end: Optional[str],
                          budget: Optional["_Budget"] = None) -> list[tuple[str, Optional[str]]]:
        """Keys in (start, end) under prefix, with values; value fetches overlap key paging."""
        budget = budget or _Budget(prefix, None)
        fetches: list[asyncio.Future] = []
        try:
            while True:
                answer = await self._rpc("state_getKeysPaged", [prefix, PAGE_SIZE, start, self.block_hash])
                keys = _page(answer, prefix, start)
                mine = keys if end is None else [k for k in keys if k < end]
                budget.take(len(mine))
                if mine:
                    fetches.append(asyncio.ensure_future(self._query_storage(mine, listed=True)))
                _raise_failed(fetches)  # a failed value fetch ends the listing, not just the read
                if len(keys) < PAGE_SIZE or len(mine) < len(keys):
                    break
                start = keys[-1]
        except BaseException:
            for fetch in fetches:
                fetch.cancel()
            fetches.clear()  # see gather_or_cancel: the traceback keeps this frame, not the fetches
            raise
        changes: list[tuple[str, Optional[str]]] = []
        for values in await gather_or_cancel(*fetches):
            changes.extend(values.items())
        return changes


async def gather_or_cancel(*aws) -> list[Any]:
    """``asyncio.gather``, except that the first failure cancels the others before it propagates.

    Plain ``gather`` leaves the others running, still sending requests on a
    connection the session is about to close; answers arriving while the SDK
    closes can stall its ``close()`` until the session's 5 s limit, which held
    up the failed refresh and the failover to the next endpoint.
    """
    tasks = [asyncio.ensure_future(a) for a in aws]
    del aws
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # The error's traceback keeps this frame; were the failed tasks (holding
        # the error) still in it, the pair would be a reference cycle keeping
        # the whole failed read (pages, connection) until a full collection.
        tasks.clear()
        raise


def _raise_failed(fetches: list[asyncio.Future]) -> None:
    for fetch in fetches:
        if fetch.done() and not fetch.cancelled() and fetch.exception() is not None:
            fetch.result()


class _Budget:
    """Keys one scan may list over all its shards."""

    def __init__(self, item: str, cap: Optional[int]):
        self.item, self.cap, self.listed = item, cap, 0

    def take(self, count: int) -> None:
        self.listed += count
        if self.cap is not None and self.listed > self.cap:
            raise InvalidRead("scan_cap", f"{self.item}: more than {self.cap} keys listed; the chain's limits allow fewer")


def _page(answer: Any, prefix: str, start: str) -> list[str]:
    """A ``state_getKeysPaged`` answer, checked: at most PAGE_SIZE keys, ascending, after ``start``, under ``prefix``."""
    if answer is None:
        raise InvalidRead("null_answer", f"state_getKeysPaged under {prefix[:18]}... answered null")
    if not isinstance(answer, list):
        raise InvalidRead("malformed_answer", f"state_getKeysPaged answered a {type(answer).__name__}, not a list")
    if len(answer) > PAGE_SIZE:
        raise InvalidRead("page_too_long", f"state_getKeysPaged answered {len(answer)} keys for {PAGE_SIZE} asked")
    if _page_as_asked(answer, prefix, start):
        return answer
    keys = []
    previous = start
    for key in answer:
        key = _hex_key(key, "state_getKeysPaged")
        if not key.startswith(prefix):
            raise InvalidRead("key_outside_prefix", f"{key[:80]} listed under prefix {prefix}")
        if key <= previous:
            rule = "keys_not_after_start" if previous == start else "keys_not_ascending"
            raise InvalidRead(rule, f"{key[:80]} listed after {previous[:80]}")
        keys.append(key)
        previous = key
    return keys


def _page_as_asked(answer: list, prefix: str, start: str) -> bool:
    """Whether a key page is the usual one, checked in bulk (C loops instead of a pattern match
    and two comparisons per key in Python): strings of lowercase hex bytes under ``prefix``,
    strictly ascending after ``start``. Anything else is left to ``_page``'s loop, which
    normalises upper case or names the problem."""
    if not answer:
        return True
    if set(map(type, answer)) != {str} or not all(map(str.startswith, answer, repeat(prefix))):
        return False
    # The prefix is 0x and hex bytes; then every key is when its length is even and the
    # parts past the prefix, joined, are lowercase hex digits.
    if any(n % 2 for n in set(map(len, answer))) or not _HEX.fullmatch(prefix):
        return False
    cut = len(prefix)
    suffixes = "".join([key[cut:] for key in answer]).encode("ascii", "replace")  # "?" for anything else
    if suffixes.translate(None, b"0123456789abcdef"):  # a character left that is not lowercase hex
        return False
    return answer[0] > start and all(map(str.__lt__, answer, answer[1:]))


def _answered(response: Any, keys: list[str], block_hash: str, *, listed: bool) -> dict[str, Optional[str]]:
    """A ``state_queryStorageAt`` answer, checked: for ``block_hash``, every key in ``keys`` once and no other."""
    if response is None:
        raise InvalidRead("null_answer", f"state_queryStorageAt of {len(keys)} keys answered null")
    if not isinstance(response, list):
        raise InvalidRead("malformed_answer", f"state_queryStorageAt answered a {type(response).__name__}, not a list")
    found = _answered_as_asked(response, keys, block_hash, listed=listed)
    if found is not None:
        return found
    asked = set(keys)
    found = {}
    for group in response:
        if not isinstance(group, dict) or not isinstance(group.get("changes"), list):
            raise InvalidRead("malformed_answer", "state_queryStorageAt: a change set without a list of changes")
        block = group.get("block")
        if block is not None and (not isinstance(block, str) or block.lower() != block_hash.lower()):
            raise InvalidRead("answer_from_other_block", f"values of block {str(block)[:80]} for block {block_hash}")
        for change in group["changes"]:
            if not isinstance(change, (list, tuple)) or len(change) != 2:
                raise InvalidRead("malformed_answer", "state_queryStorageAt: a change is not a [key, value] pair")
            key, value = change[0], change[1]
            if type(key) is not str or key not in asked:
                # Our keys are lowercase hex, so a key found as is needs no pattern check
                # (~100,000 a refresh); anything else is normalised, then must be one asked.
                key = _hex_key(key, "state_queryStorageAt")
            if key not in asked:
                raise InvalidRead("unrequested_key", f"state_queryStorageAt answered {key[:80]}, never asked")
            if key in found:
                raise InvalidRead("duplicate_key", f"state_queryStorageAt answered {key[:80]} twice")
            if value is not None:
                if not isinstance(value, str) or not value.startswith("0x"):
                    raise InvalidRead("malformed_answer", f"the value of {key[:80]} is not 0x-prefixed hex")
                if len(value) > 2 + 2 * MAX_VALUE_BYTES:
                    raise InvalidRead("value_too_large", f"the value of {key[:80]} has {(len(value) - 2) // 2} bytes")
            elif listed:
                raise InvalidRead("listed_key_without_value", f"{key[:80]} was listed at this block but has no value")
            found[key] = value
    if len(found) != len(asked):
        raise InvalidRead("missing_keys", f"state_queryStorageAt answered {len(found)} of {len(asked)} keys")
    return found


def _answered_as_asked(response: list, keys: list[str], block_hash: str, *, listed: bool) -> Optional[dict[str, Optional[str]]]:
    """The usual answer checked in bulk (C loops instead of ~100,000 Python iterations a refresh):
    one change set for ``block_hash`` of ``[key, value]`` lists, every key of ``keys`` (distinct)
    once and as asked, each value None (unless ``listed``) or 0x-prefixed within ``MAX_VALUE_BYTES``.
    Anything else: None, and ``_answered``'s loop names the problem or normalises the keys."""
    values = _values_in_order(response, keys, block_hash, listed=listed)
    if values is not None:
        # Keyed by our own key strings, whose hashes every lookup that follows already knows.
        return dict(zip(keys, values))
    changes = _changes(response, keys, block_hash)
    if changes is None:
        return None
    found = dict(changes)
    if len(found) != len(changes) or found.keys() != set(keys):
        return None
    return found if _values_fit(list(found.values()), listed) else None


def _values_in_order(response: Any, keys: list[str], block_hash: str, *, listed: bool) -> Optional[list[Optional[str]]]:
    """The values of ``keys`` (distinct), in their order, when the answer is the usual one and
    lists them in the order asked, as Substrate does (``_answered_as_asked``'s checks); else None."""
    changes = _changes(response, keys, block_hash)
    if changes is None or list(map(itemgetter(0), changes)) != keys:
        return None
    values = list(map(itemgetter(1), changes))
    return values if _values_fit(values, listed) else None


def _changes(response: Any, keys: list[str], block_hash: str) -> Optional[list]:
    """The one change set's ``[key, value]`` lists, as many as ``keys``, for ``block_hash``; else None."""
    if type(response) is not list or len(response) != 1 or type(response[0]) is not dict:
        return None
    changes, block = response[0].get("changes"), response[0].get("block")
    if type(changes) is not list or len(changes) != len(keys):
        return None
    if block is not None and (type(block) is not str or block.lower() != block_hash.lower()):
        return None
    if changes and (set(map(type, changes)) != {list} or set(map(len, changes)) != {2}):
        return None
    return changes


def _values_fit(values: list, listed: bool) -> bool:
    """Each value None (unless ``listed``) or 0x-prefixed text within ``MAX_VALUE_BYTES``."""
    present = list(filter(None, values))  # drops None, and "" (counted below as not hex)
    absent = values.count(None)
    if len(present) + absent != len(values) or (listed and absent):
        return False
    if set(map(type, present)) - {str} or not all(map(str.startswith, present, repeat("0x"))):
        return False
    return not present or max(map(len, present)) <= 2 + 2 * MAX_VALUE_BYTES


def _hex_key(key: Any, method: str) -> str:
    if not isinstance(key, str) or not _HEX.fullmatch(key):
        raise InvalidRead("malformed_answer", f"{method}: key {str(key)[:80]} is not 0x-prefixed hex")
    return key.lower()


def _shard_bounds(prefix: str, shards: int) -> list[tuple[str, Optional[str]]]:
    """Split the key space under ``prefix`` by its next byte into ``shards`` ranges.

    Range i lists keys strictly after its start and stops before the next
    range's start. Hashed map keys spread evenly over that byte.
    """
    shards = max(1, min(shards, 256))
    cuts = [prefix + f"{(256 * i) // shards:02x}" for i in range(1, shards)]
    starts = [prefix] + cuts
    ends: list[Optional[str]] = [*cuts, None]
    return list(zip(starts, ends))


def _bytes(value_hex: Optional[str]) -> Optional[bytes]:
    return bytes.fromhex(value_hex[2:]) if value_hex is not None else None
