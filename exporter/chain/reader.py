"""Read everything one refresh needs from the chain, pinned to one finalized block.

The read itself, its four stages, is ``stages.ReadStages``; this module opens
the block it is read at and admits what it read.

Opening the block (``open_finalized``: the finalized head, its number and its
runtime codec) is the only part that talks to the SDK connection.

Nothing is returned that the chain could not have said: the storage reader
checks every answer as it arrives and holds the read's scans to a memory
budget (``chain.max_scan_bytes``; netuid-keyed maps also to the netuid bound), and
``read`` passes the finished read through a ``ReadGate`` (the chain's
invariants, then the step from the last good read, both against this
machine's clock). While the plan runs, the head's number is checked to name
the head (``trust.number_is_the_head``) and, when asked, another endpoint
gives its word on the head (``witness``). Each refusal is an
``InvalidRead`` raised inside the read, so the session counts the endpoint
as failed and tries the next one.
"""

from __future__ import annotations

import asyncio
import gc
from dataclasses import dataclass, replace
from typing import Any, Optional

from bittensor._transport.interface import SubstrateConnection

from exporter.config import ScopeConfig
from exporter.snapshot.model import ChainRead, EventWindow
from exporter.snapshot.read_rules import check_block_hash
from exporter.snapshot.validate import ReadGate
from exporter.chain.events import ReaderEventSource, read_window
from exporter.chain.trust import Witness, check_window_times, number_is_the_head
from exporter.chain.reuse import KeyCache, ValueCache
from exporter.chain.stages import ReadStages
from exporter.chain.storage import DEFAULT_MAX_SCAN_BYTES, ScanBudget, StorageReader, gather_or_cancel


async def codec_at(conn: SubstrateConnection, block_hash: str):
    """The runtime codec governing ``block_hash`` (cached per spec version by the SDK).

    The storage reader builds keys and decodes pages itself, so it needs the
    codec the SDK keeps behind ``SubstrateConnection``; a runtime upgrade
    between refreshes is picked up here because resolution is per block.
    """
    return await conn._runtimes.codec_at(block_hash)  # noqa: SLF001 - see docstring


@dataclass(frozen=True)
class EventRange:
    """Read the chain's events of the blocks after ``since`` (the last block history recorded),
    at most the last ``limit`` blocks of them."""

    since: Optional[int]
    limit: int
    since_time_ms: Optional[int] = None  # the Timestamp.Now of ``since``, when history kept it


async def _nothing() -> None:
    return None


async def _events_of(source: StorageReader, events: EventRange, block: int) -> Optional[EventWindow]:
    """The events since ``events.since``; when they cannot be read, a window saying so, so the
    metrics of this read are still published. History then waits for a later read to place the
    changes (``failed``), unless the blocks missed already reach the catch-up limit: then it
    records them as net changes over a gap rather than not at all."""
    try:
        return await read_window(ReaderEventSource(source), events.since, block, events.limit)
    except Exception as error:  # noqa: BLE001 - cancellation (BaseException) still propagates
        if events.since is None:
            return None
        reason = f"{type(error).__name__}: {str(error)[:200]}"
        if block - events.since > events.limit:  # some of those blocks are already past the limit
            return EventWindow(first=events.since + 1, read_from=block + 1, last=block)
        return EventWindow(first=events.since + 1, read_from=block + 1, last=block, failed=reason)


class ChainReader(ReadStages):
    """Opens the block of one refresh's read, runs the stages at it (``ReadStages``) and admits the result.

    ``gate`` holds the last good read (and one held back), so the step checks
    span refreshes and endpoints.
    """

    def __init__(self, max_in_flight: int, max_scan_bytes: int = DEFAULT_MAX_SCAN_BYTES):
        super().__init__()
        self._max_in_flight = max_in_flight
        self._max_scan_bytes = max_scan_bytes
        self._failed_since_collect = False
        self._keys = KeyCache()  # storage keys by params, kept from the last read
        self._values = ValueCache()  # decoded values by raw value, kept from the last read
        self.gate = ReadGate()

    async def read(self, conn: SubstrateConnection, scope: ScopeConfig, events: Optional[EventRange] = None,
                   at_block: Optional[int] = None, witness: Optional[Witness] = None) -> ChainRead:
        """One refresh's reads over ``conn``, all at its finalized head (or at block ``at_block``: a
        backfill), admitted by the gate; with ``events``, also the chain's events of the blocks since
        ``events.since``. ``witness(block, block_hash, source)``: asked about the head while the
        read runs (another endpoint's word on it); what it raises fails the read.

        Raises ``InvalidRead`` (a ValueError) for anything the chain could not have said.
        """
        if self._failed_since_collect:
            # A failed read's connection is dropped by the session and closed in
            # the background; the SDK's and websockets' objects form reference
            # cycles, so it (metadata, buffers: ~3 MB) is freed only by a full
            # collection, which a big heap rarely gets: an endpoint refused
            # every minute grew the process by ~2.8 MB a refresh, 350 MB in 100.
            self._failed_since_collect = False
            gc.collect()
        self._stake_keys = None
        try:
            if at_block is None:
                # After a restart, the block history recorded last is what the head is judged against.
                recorded = (events.since, events.since_time_ms) if events is not None else None
                source, block, spec_version = await self.open_finalized(conn, recorded)
            else:
                source, block, spec_version = await self.open_at(conn, at_block)
            read, window, _, _ = await gather_or_cancel(
                self.read_from(source, scope, block=block, spec_version=spec_version),
                _events_of(source, events, block) if events else _nothing(),
                number_is_the_head(source, block) if at_block is None else _nothing(),
                witness(block, source.block_hash, source) if witness is not None and at_block is None else _nothing(),
            )
            self.gate.admit(read, scope, self._stake_keys,
                            (lambda: check_window_times(window, read)) if window is not None else None)
            if window is not None:
                read = replace(read, events=window)
        except BaseException:
            self._failed_since_collect = True
            raise
        return read

    async def open_finalized(self, conn: SubstrateConnection,
                             recorded: Optional[tuple[Optional[int], Optional[int]]] = None) -> tuple[StorageReader, int, int]:
        """A storage reader pinned to the finalized head, with its block number and spec version.

        Every request of the read goes through one semaphore of ``max_in_flight``.
        A malformed head, a header number at or before genesis, or one before
        the last good read's ends the read before anything is read at it.
        """
        head = await conn.get_chain_finalised_head()
        check_block_hash(head)  # before any request uses it
        block, codec = await gather_or_cancel(conn.get_block_number(head), codec_at(conn, head))
        return self._pinned(conn, codec, head, block, recorded)

    async def open_at(self, conn: SubstrateConnection, number: int) -> tuple[StorageReader, int, int]:
        """A storage reader pinned to block ``number`` (a backfill from an archive endpoint)."""
        block_hash = await conn.rpc_request("chain_getBlockHash", [number])
        check_block_hash(block_hash)
        return self._pinned(conn, await codec_at(conn, block_hash), block_hash, number)

    def _pinned(self, conn: SubstrateConnection, codec: Any, block_hash: str, block: int,
                recorded: Optional[tuple[Optional[int], Optional[int]]] = None) -> tuple[StorageReader, int, int]:
        self.gate.check_head(block, block_hash, recorded)
        self._keys.start(codec)
        self._values.start(codec)
        semaphore = asyncio.Semaphore(self._max_in_flight)
        budget = ScanBudget(self._max_scan_bytes)  # one for the read: its scans run side by side
        return StorageReader(conn, codec, block_hash, semaphore, self._keys, self._values, budget), block, codec.spec_version
