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

Nothing an endpoint answers is taken on trust: every answer is checked as soon
as it arrives (``answers``: ``InvalidRead`` otherwise), and the read's scans
stop as soon as the keys and values they were answered pass the read's
``ScanBudget`` (``chain.max_scan_bytes``), so what an endpoint sends costs
bounded memory however large it says a map is. Keys and decoded values are
kept from read to read (``reuse``).
"""

from __future__ import annotations

import asyncio
from itertools import chain
from typing import Any, Optional, Sequence

from bittensor._transport.codec import RuntimeCodec
from bittensor._transport.interface import SubstrateConnection
from bittensor._transport.storage import decode_storage_values

from exporter.chain.answers import HEX, MAX_VALUE_BYTES, PAGE_SIZE, answered, page_keys, values_in_order
from exporter.chain.reuse import KeyCache, ValueCache, build_keys, raw_bytes
from exporter.snapshot.read_rules import InvalidRead

# Keys per state_queryStorageAt of a batch. Nodes cap that call only by the
# JSON-RPC request and response sizes (15 MiB by default); 2,500 keys are
# about 0.5 MB each way. A refresh reads every uid's hotkey and stake
# (~90,000 keys at mainnet scale), so this halves its requests against 1,000.
QUERY_BATCH = 2500
SUBTENSOR = "SubtensorModule"
# What the map scans of one read may hold (chain.max_scan_bytes): see ScanBudget and
# docs/bounds.md for how it was sized.
DEFAULT_MAX_SCAN_BYTES = 256 * 2**20


class StorageReader:
    def __init__(
        self,
        conn: SubstrateConnection,
        codec: RuntimeCodec,
        block_hash: str,
        semaphore: asyncio.Semaphore,
        keys: Optional[KeyCache] = None,
        values: Optional[ValueCache] = None,
        budget: Optional["ScanBudget"] = None,
    ):
        self._conn = conn
        self._codec = codec
        self.block_hash = block_hash
        self._semaphore = semaphore
        self._keys = keys
        self._values = values
        self.budget = budget if budget is not None else ScanBudget(DEFAULT_MAX_SCAN_BYTES)

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
        if not isinstance(answer, str) or not HEX.fullmatch(answer) or len(answer) > 2 + 2 * MAX_VALUE_BYTES:
            raise InvalidRead("malformed_answer", f"state_call {api}_{method}: not bounded 0x-prefixed hex")
        try:
            return self._codec.decode(spec["output"], bytes.fromhex(answer[2:]))
        except Exception as error:  # noqa: BLE001 - a value the runtime's type does not decode
            raise InvalidRead("undecodable_answer", f"state_call {api}_{method}: {str(error)[:200]}") from error

    async def _query_storage(self, keys: list[str], *, listed: bool = False) -> dict[str, Optional[str]]:
        """Raw values of ``keys`` at the pinned block; ``listed``: keys a page listed, so each has a value."""
        keys = list(dict.fromkeys(keys))  # asked once each, so a key answered twice is the endpoint's doing
        response = await self._rpc("state_queryStorageAt", [keys, self.block_hash])
        return answered(response, keys, self.block_hash, listed=listed)

    async def _query_values(self, keys: list[str]) -> list[Optional[str]]:
        """Raw values of ``keys`` (distinct) at the pinned block, in their order."""
        response = await self._rpc("state_queryStorageAt", [keys, self.block_hash])
        values = values_in_order(response, keys, self.block_hash, listed=False)
        if values is None:  # checked key by key, the problem named
            found = answered(response, keys, self.block_hash, listed=False)
            values = list(map(found.get, keys))
        return values

    async def values(self, reads: Sequence[tuple[str, list]], pallet: str = SUBTENSOR) -> list[Any]:
        """Decoded values of ``(item, params)`` reads, defaults applied, in one request."""
        entries = [self._codec.storage_entry(pallet, item) for item, _ in reads]
        keys = ["0x" + self._codec.storage_key(e, list(p)).hex() for e, (_, p) in zip(entries, reads)]
        raw = await self._query_storage(keys)
        return [
            decode_storage_values(self._codec, entry, [raw_bytes(raw.get(key))])[0]
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
            keys = build_keys(self._codec, entry, params_list)
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
        return decode_storage_values(self._codec, entry, [raw_bytes(raw) for raw in raws])

    async def scan(self, item: str, params: Sequence = (), *, shards: int = 1, max_keys: Optional[int] = None,
                   pallet: str = SUBTENSOR) -> list[tuple[Any, Any]]:
        """Every (key, value) of a map under ``params``, keys decoded past the prefix.

        Paging stops with an ``InvalidRead`` as soon as the answers pass the
        reader's ``ScanBudget`` (shared by every scan of the read), or more than
        ``max_keys`` keys over all shards (a map with a bound the chain sets).
        """
        entry = self._codec.storage_entry(pallet, item)
        prefix = "0x" + self._codec.storage_key(entry, list(params)).hex()
        bounds = _shard_bounds(prefix, shards)
        budget = _Budget(item, max_keys, self.budget)
        pages = await gather_or_cancel(*(self._scan_range(prefix, lo, hi, budget) for lo, hi in bounds))
        changes = [change for page in pages for change in page]
        if self._values is not None:
            return self._values.decode_map(self._codec, entry, (pallet, item, *params), changes, len(params))
        return self._codec.decode_map_changes(entry, changes, fixed=len(params))

    async def _scan_range(self, prefix: str, start: str, end: Optional[str],
                          budget: Optional["_Budget"] = None) -> list[tuple[str, Optional[str]]]:
        """Keys in (start, end) under prefix, with values; value fetches overlap key paging."""
        budget = budget or _Budget(prefix, None, self.budget)
        fetches: list[asyncio.Future] = []
        try:
            while True:
                answer = await self._rpc("state_getKeysPaged", [prefix, PAGE_SIZE, start, self.block_hash])
                keys = page_keys(answer, prefix, start, PAGE_SIZE)
                mine = keys if end is None else [k for k in keys if k < end]
                budget.take_keys(mine)
                if mine:
                    fetches.append(asyncio.ensure_future(self._scan_values(mine, budget)))
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

    async def _scan_values(self, keys: list[str], budget: "_Budget") -> dict[str, Optional[str]]:
        """The values of keys a page listed, counted against the scan's budget."""
        values = await self._query_storage(keys, listed=True)
        budget.take_values(values.values())
        return values


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


class ScanBudget:
    """The bytes of keys and values (as answered: hex text) every scan of one read may hold.

    A memory budget, not a guess of how large a map may grow: a map the chain
    really holds is read whatever its size against the last read, and what an
    endpoint makes up stops costing memory at the budget. One budget for the
    whole read, so the scans running side by side hold at most it together.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.used = 0
        self.by_item: dict[str, int] = {}

    def take(self, item: str, count: int) -> None:
        self.used += count
        self.by_item[item] = self.by_item.get(item, 0) + count
        if self.used > self.max_bytes:
            raise InvalidRead(
                "scan_cap",
                f"{item}: the map scans of this read passed chain.max_scan_bytes ({_mib(self.max_bytes)}) with "
                f"{_mib(self.by_item[item])} answered for {item}; if the chain really holds this much, raise the setting",
            )


def _mib(count: int) -> str:
    return f"{count / 2**20:.1f} MiB" if count >= 2**20 else f"{count} bytes"


class _Budget:
    """What one scan takes, over all its shards: keys against its own cap (if any), bytes against the read's."""

    def __init__(self, item: str, cap: Optional[int], read_budget: ScanBudget):
        self.item, self.cap, self.listed, self.read_budget = item, cap, 0, read_budget

    def take_keys(self, keys: list[str]) -> None:
        self.listed += len(keys)
        if self.cap is not None and self.listed > self.cap:
            raise InvalidRead("scan_cap", f"{self.item}: more than {self.cap} keys listed; the chain's limits allow fewer")
        self.read_budget.take(self.item, sum(map(len, keys)))

    def take_values(self, values) -> None:
        self.read_budget.take(self.item, sum(map(len, filter(None, values))))


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


