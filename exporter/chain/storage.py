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
"""

from __future__ import annotations

import asyncio
from typing import Any, Optional, Sequence

from bittensor._transport.codec import RuntimeCodec
from bittensor._transport.interface import SubstrateConnection
from bittensor._transport.storage import decode_storage_values

PAGE_SIZE = 1000  # the node-side cap on state_getKeysPaged and a sane queryStorageAt size
SUBTENSOR = "SubtensorModule"


class StorageReader:
    def __init__(
        self,
        conn: SubstrateConnection,
        codec: RuntimeCodec,
        block_hash: str,
        semaphore: asyncio.Semaphore,
    ):
        self._conn = conn
        self._codec = codec
        self.block_hash = block_hash
        self._semaphore = semaphore

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

    async def _query_storage(self, keys: list[str]) -> dict[str, Optional[str]]:
        response = await self._rpc("state_queryStorageAt", [keys, self.block_hash])
        return {key: value for group in response or [] for key, value in group["changes"]}

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
        keys = ["0x" + k.hex() for k in self._codec.storage_key_batch(entry, [list(p) for p in params_list])]
        chunks = [keys[i : i + PAGE_SIZE] for i in range(0, len(keys), PAGE_SIZE)]
        found: dict[str, Optional[str]] = {}
        for part in await gather_or_cancel(*(self._query_storage(chunk) for chunk in chunks)):
            found.update(part)
        return decode_storage_values(self._codec, entry, [_bytes(found.get(k)) for k in keys])

    async def scan(self, item: str, params: Sequence = (), *, shards: int = 1, pallet: str = SUBTENSOR) -> list[tuple[Any, Any]]:
        """Every (key, value) of a map under ``params``, keys decoded past the prefix."""
        entry = self._codec.storage_entry(pallet, item)
        prefix = "0x" + self._codec.storage_key(entry, list(params)).hex()
        bounds = _shard_bounds(prefix, shards)
        pages = await gather_or_cancel(*(self._scan_range(prefix, lo, hi) for lo, hi in bounds))
        changes = [change for page in pages for change in page]
        return self._codec.decode_map_changes(entry, changes, fixed=len(params))

    async def _scan_range(self, prefix: str, start: str, end: Optional[str]) -> list[tuple[str, Optional[str]]]:
        """Keys in (start, end) under prefix, with values; value fetches overlap key paging."""
        fetches: list[asyncio.Future] = []
        try:
            while True:
                keys = await self._rpc("state_getKeysPaged", [prefix, PAGE_SIZE, start, self.block_hash]) or []
                mine = keys if end is None else [k for k in keys if k < end]
                if mine:
                    fetches.append(asyncio.ensure_future(self._query_storage(mine)))
                _raise_failed(fetches)  # a failed value fetch ends the listing, not just the read
                if len(keys) < PAGE_SIZE or len(mine) < len(keys):
                    break
                start = keys[-1]
        except BaseException:
            for fetch in fetches:
                fetch.cancel()
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
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _raise_failed(fetches: list[asyncio.Future]) -> None:
    for fetch in fetches:
        if fetch.done() and not fetch.cancelled() and fetch.exception() is not None:
            fetch.result()


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
