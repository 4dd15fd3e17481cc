"""Chain-reading baselines, in their own process: (a) naive per validator, (b) SDK paging,
and the SDK's decode-only time for the storage one exporter refresh fetches.

All three talk to the simulated node through the SDK's ``SubstrateConnection``,
pinned to the finalized head like the exporter.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from bittensor._transport.codec import RuntimeCodec
from bittensor._transport.interface import SubstrateConnection
from bittensor._transport.storage import decode_storage_values

from exporter.chain.reader import ChainReader
from exporter.chain.stages import MIN_TAKE_PER_SUBNET, THRESHOLD_SUSPENDED
from exporter.chain.reuse import ValueCache
from exporter.config import ScopeConfig

SUBTENSOR = "SubtensorModule"
# Every map the exporter reads, whole: what an SDK user without known keys must page through.
WHOLE_MAPS = (
    "NetworksAdded", "ValidatorPermit", "MaxAllowedValidators", "ChildKeys", "ParentKeys",
    "PendingChildKeys", "Keys", "TotalHotkeyAlpha", "ChildkeyTake", "Owner",
    # exporter/chain/activity.py
    "ActivityCutoff", "LastUpdate", "Active", "ValidatorTrust", "Dividends", "Emission", "StakeWeight",
    "AlphaDividendsPerSubnet", "RootAlphaDividendsPerSubnet", "Delegates",
)
OPTIONAL_MAPS = (MIN_TAKE_PER_SUBNET, THRESHOLD_SUSPENDED, "ActivityCutoffFactorMilli", "MechanismCountCurrent",
                 "TaoDividendsPerSubnet")
PLAIN_ITEMS = (
    (SUBTENSOR, "TaoWeight"), (SUBTENSOR, "StakeThreshold"), (SUBTENSOR, "MinChildkeyTake"),
    (SUBTENSOR, "MaxChildkeyTake"), (SUBTENSOR, "PendingChildKeyCooldown"), ("Timestamp", "Now"),
)


class ClientSide:
    def __init__(self, url: str):
        self._loop = asyncio.new_event_loop()
        self.conn = SubstrateConnection(url, response_timeout=60)
        self._run(self.conn.initialize())

    def _run(self, coroutine) -> Any:
        return self._loop.run_until_complete(coroutine)

    def _timed(self, coroutine) -> dict[str, Any]:
        wall, cpu = time.perf_counter(), time.process_time()
        result = self._run(coroutine)
        return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "result": result}

    # -- (a) ----------------------------------------------------------------------------------

    def naive(self, validators: list[tuple[str, int]]) -> dict[str, Any]:
        """Per validator, one request at a time: ParentKeys, ChildKeys, ChildkeyTake, own and root stake."""
        return self._timed(self._naive(validators))

    async def _naive(self, validators: list[tuple[str, int]]) -> int:
        conn = self.conn
        head = await conn.get_chain_finalised_head()
        for hotkey, netuid in validators:
            await conn.query(SUBTENSOR, "ParentKeys", [hotkey, netuid], block_hash=head)
            await conn.query(SUBTENSOR, "ChildKeys", [hotkey, netuid], block_hash=head)
            await conn.query(SUBTENSOR, "ChildkeyTake", [hotkey, netuid], block_hash=head)
            await conn.query(SUBTENSOR, "TotalHotkeyAlpha", [hotkey, netuid], block_hash=head)
            await conn.query(SUBTENSOR, "TotalHotkeyAlpha", [hotkey, 0], block_hash=head)
        return len(validators)

    # -- (b) ----------------------------------------------------------------------------------

    def sdk_paging(self) -> dict[str, Any]:
        """The same maps whole, with ``query_map``'s default paging (100 keys a page, one page at a time)."""
        return self._timed(self._sdk_paging())

    async def _sdk_paging(self) -> int:
        conn = self.conn
        head = await conn.get_chain_finalised_head()
        codec = await conn._runtimes.codec_at(head)  # noqa: SLF001 - only to list optional items
        maps = list(WHOLE_MAPS)
        for item in OPTIONAL_MAPS:
            try:
                codec.storage_entry(SUBTENSOR, item)
                maps.append(item)
            except Exception:  # noqa: BLE001 - not in this runtime
                pass

        async def whole(item: str) -> int:
            result = await conn.query_map(SUBTENSOR, item, block_hash=head)
            return len([pair async for pair in result])

        # Maps side by side (as asyncio.gather would), pages of each map one after another.
        counts = await asyncio.gather(
            *(whole(item) for item in maps),
            *(conn.query(pallet, item, block_hash=head) for pallet, item in PLAIN_ITEMS),
        )
        return sum(counts[: len(maps)])

    # -- decode-only baseline -----------------------------------------------------------------

    def decode_baseline(self, repeats: int) -> dict[str, Any]:
        """Median CPU the SDK's codec alone needs to decode what one exporter refresh fetched.

        One exporter read (its own ``ChainReader``) runs with the codec's two bulk
        decoders recording their inputs; those calls are then replayed and timed. A
        running exporter's reader decodes only the raw values it has not met before
        (``exporter.chain.reuse.ValueCache``); the baseline is the SDK decoding every
        value read, so the recorded read bypasses that table (and is a new reader's:
        map sizes only decide how scans are sharded, not what is decoded).
        """
        reader = ChainReader(32)
        calls: list[tuple] = []
        batch_decode, decode_map_changes = RuntimeCodec.batch_decode, RuntimeCodec.decode_map_changes

        def recording_batch_decode(codec, type_strings, datas):
            calls.append((batch_decode, codec, (list(type_strings), list(datas)), {}))
            return batch_decode(codec, type_strings, datas)

        def recording_decode_map_changes(codec, entry, changes, fixed=0):
            calls.append((decode_map_changes, codec, (entry, list(changes)), {"fixed": fixed}))
            return decode_map_changes(codec, entry, changes, fixed=fixed)

        def every_value(cache, codec, entry, item, raws):
            return decode_storage_values(codec, entry, [None if raw is None else bytes.fromhex(raw[2:]) for raw in raws])

        table_decode = ValueCache.decode
        RuntimeCodec.batch_decode = recording_batch_decode
        RuntimeCodec.decode_map_changes = recording_decode_map_changes
        ValueCache.decode = every_value
        try:
            self._run(reader.read(self.conn, ScopeConfig()))
        finally:
            RuntimeCodec.batch_decode, RuntimeCodec.decode_map_changes = batch_decode, decode_map_changes
            ValueCache.decode = table_decode
        samples = []
        for _ in range(repeats):
            started = time.process_time()
            for function, codec, args, kwargs in calls:
                function(codec, *args, **kwargs)
            samples.append(time.process_time() - started)
        values = sum(len(args[1]) for _, _, args, _ in calls)
        return {"cpu": statistics.median(samples), "calls": len(calls), "values": values}

    def close(self) -> None:
        try:
            self._run(asyncio.wait_for(self.conn.close(), 5))
        except Exception:  # noqa: BLE001 - closing at the end of a run
            pass
        self._loop.close()
