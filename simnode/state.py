"""The simulated chain's state: SCALE-encoded storage frozen into numbered blocks.

A test mutates the *pending* storage (``set``/``delete``) and deposits events
(``emit``), then ``commit_block()`` freezes both into a new block: its storage,
``Timestamp.Now`` and ``System.Events``. The server only ever reads committed
blocks, so the test thread can keep mutating pending storage while the node's
event loop serves reads. Blocks are kept compactly (consecutive blocks with the
same storage share it; hashes carry their number), so a month of blocks is cheap.
"""

from __future__ import annotations

import bisect
import hashlib
import struct
import threading
import time
from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from bittensor_core import Runtime

from simnode.events import encode_events, event_record, events_key, extrinsic_success

METADATA_DIR = Path(__file__).resolve().parent / "metadata"
NEWER_RUNTIME_SPEC = 1_000_393
# spec_version -> V15 metadata file (see metadata/README.md).
METADATA_FILES = {
    393: "finney-metadata-v15.scale",
    365: "finney-2025-12-metadata-v15.scale",
    # Not a real runtime: spec 393 plus items of later runtimes (derive_newer_runtime.py).
    # Far above any finney spec (425 in mid 2026), ending in the base spec's number.
    NEWER_RUNTIME_SPEC: "newer-runtime-variant-v15.scale",
}
# 2026-01-01T00:00:00Z in ms; block n is stamped GENESIS_TIME_MS + n * BLOCK_TIME_MS.
GENESIS_TIME_MS = 1_767_225_600_000
BLOCK_TIME_MS = 12_000
ZERO_HASH = "0x" + "00" * 32
# The simulated chain's block 0 hash unless ``ChainState(genesis_hash=...)`` names another: the
# chain.genesis_hash of every configuration that reads a simulated node (config.demo.yaml, the
# tests'). Not finney's, so an exporter left at its default refuses a simulated node.
SIMNODE_GENESIS_HASH = "0x5588df13621b87c82a1bfb384f0d2236b5f556bb0015a7d55b1223339abc3c64"

# Parsing metadata takes ~20 ms and a Runtime is read-only, so share them.
_blobs: dict[int, bytes] = {}
_runtimes: dict[int, Runtime] = {}
_cache_lock = threading.Lock()


def metadata_blob(spec_version: int) -> bytes:
    """Raw ``RuntimeMetadataPrefixed`` bytes (V15) for a known spec version."""
    with _cache_lock:
        if spec_version not in _blobs:
            if spec_version not in METADATA_FILES:
                raise ValueError(
                    f"no metadata for spec_version {spec_version}; "
                    f"known: {sorted(METADATA_FILES)}"
                )
            _blobs[spec_version] = (METADATA_DIR / METADATA_FILES[spec_version]).read_bytes()
        return _blobs[spec_version]


def runtime_for(spec_version: int) -> Runtime:
    blob = metadata_blob(spec_version)
    with _cache_lock:
        if spec_version not in _runtimes:
            _runtimes[spec_version] = Runtime(blob, spec_version, 1)
        return _runtimes[spec_version]


# Storage keys do not depend on the runtime (twox128 of pallet and item names).
_NOW_KEY = bytes(runtime_for(393).storage_key("Timestamp", "Now", []))
EVENTS_KEY = events_key(runtime_for(393))


class BlockStorage(Mapping):
    """A committed block's storage: the storage it shares with the blocks around it
    (``base``, never mutated) under the values that differ in every block
    (``Timestamp.Now``, ``System.Events``)."""

    __slots__ = ("_base", "_overlay")

    def __init__(self, base: dict[bytes, bytes], overlay: dict[bytes, bytes]):
        self._base = base
        self._overlay = overlay

    def __getitem__(self, key: bytes) -> bytes:
        found = self._overlay.get(key)
        return self._base[key] if found is None else found

    def get(self, key: bytes, default: Any = None) -> Any:
        found = self._overlay.get(key)
        return self._base.get(key, default) if found is None else found

    def get_many(self, keys: list[bytes]) -> list[Optional[bytes]]:
        """``get`` of every key (None where absent), the lookups in C: a mainnet-scale read asks
        ~130,000 keys, and the simulated node must not be what a benchmark measures."""
        found = list(map(self._overlay.get, keys))
        if found.count(None):
            base = self._base.get
            found = [base(key) if value is None else value for key, value in zip(keys, found)]
        return found

    def __contains__(self, key: object) -> bool:
        return key in self._overlay or key in self._base

    def __iter__(self) -> Iterator[bytes]:
        yield from self._overlay
        yield from (key for key in self._base if key not in self._overlay)

    def __len__(self) -> int:
        return len(self._base) + sum(1 for key in self._overlay if key not in self._base)


@dataclass(frozen=True)
class Block:
    """One committed block, made on demand from the chain's compact record of it."""

    number: int
    hash: str
    parent_hash: str
    spec_version: int
    timestamp_ms: int
    storage: BlockStorage = field(repr=False)
    keys: list[bytes] = field(repr=False)  # sorted, for paging with bisect; never mutated
    events: bytes = field(repr=False, default=b"")  # the SCALE value of System.Events

    def keys_after(self, prefix: bytes, start: Optional[bytes], count: int) -> list[bytes]:
        """Up to ``count`` keys starting with ``prefix``, strictly after ``start``.

        Plain byte order like a real node: a start key sorting before the
        prefix (None, the prefix itself, a shorter key) starts at the prefix;
        one sorting after every prefixed key yields nothing.
        """
        index = bisect.bisect_left(self.keys, prefix)
        if start is not None:
            index = max(index, bisect.bisect_right(self.keys, start))
        found = []
        for key in self.keys[index : index + count]:
            if not key.startswith(prefix):
                break
            found.append(key)
        return found


@dataclass(frozen=True)
class _Segment:
    """Consecutive blocks from ``first`` on with the same storage (but for Now and Events)."""

    first: int
    storage: dict[bytes, bytes]
    keys: list[bytes]
    spec_version: int


class ChainState:
    def __init__(
        self,
        spec_version: int = 393,
        *,
        salt: str = "",
        wall_clock: bool = False,
        state_pruning: Optional[int] = None,
        deny_unsafe_rpc: bool = False,
        genesis_hash: str = SIMNODE_GENESIS_HASH,
    ):
        """A chain whose genesis (block 0, empty storage) runs ``spec_version``.

        Block 0's hash is ``genesis_hash``: the chain's identity, which an exporter checks
        against its chain.genesis_hash (another value makes another network). The hashes of
        later blocks derive from (genesis spec, salt, number). The SDK keys its metadata disk
        cache on genesis hash + spec version, and here a spec version always has the same
        metadata, so chains sharing a genesis hash share the cache safely.

        Blocks are stamped GENESIS_TIME_MS + number * BLOCK_TIME_MS, so tests
        know every block's time; with ``wall_clock`` (the demo an operator
        looks at) each block is stamped with the time it is committed, so
        alerts on how recent a change is behave as on a live chain.

        ``state_pruning``: like a node's ``--state-pruning N``, only the state of
        the head and the N blocks before it can be read (headers and hashes of
        every block still can); None keeps every state (an archive node).
        ``deny_unsafe_rpc``: like ``--rpc-methods safe`` (public endpoints), the
        unsafe ``state_queryStorage`` is refused.
        """
        runtime_for(spec_version)  # fail fast on an unknown spec
        if state_pruning is not None and state_pruning < 0:
            raise ValueError("state_pruning must be None (archive) or >= 0")
        self.finalized_lag = 0
        self.state_pruning = state_pruning
        self.deny_unsafe_rpc = deny_unsafe_rpc
        self._wall_clock = wall_clock
        self._last_ms = 0
        self._salt = f"simnode:{spec_version}:{salt}"
        if not (isinstance(genesis_hash, str) and len(genesis_hash) == 66 and genesis_hash.startswith("0x")):
            raise ValueError("genesis_hash must be 0x and 64 hex digits")
        int(genesis_hash, 16)  # hex, or ValueError
        self.genesis_hash = genesis_hash.lower()
        self._lock = threading.Lock()
        self._pending: dict[bytes, bytes] = {}
        self._pending_spec = spec_version
        self._dirty = True  # whether the pending storage differs from the head's
        self._keys_changed = True  # whether the sorted key list must be rebuilt
        self._touched: set[bytes] = set()  # keys added or deleted since the last key list
        self._pending_events: list[tuple[Any, str, str, Any]] = []  # (phase, pallet, variant, fields)
        self._next_extrinsic = 1  # extrinsic 0 is the timestamp inherent
        # The compact record of committed blocks: storage segments, the events that
        # differ from an idle block's, and (wall clock only) timestamps.
        self._segments: list[_Segment] = []
        self._firsts: list[int] = []
        self._events: dict[int, bytes] = {}
        self._stamps: Optional[array] = array("q") if wall_clock else None
        self._count = 0
        self._freeze()

    # -- writes (pending block) ------------------------------------------------

    @property
    def runtime(self) -> Runtime:
        """The runtime that encodes values for the pending block."""
        return runtime_for(self._pending_spec)

    @property
    def pending_spec_version(self) -> int:
        return self._pending_spec

    def set_spec_version(self, spec_version: int) -> None:
        """Run the next committed block (and later ones) on ``spec_version``."""
        runtime_for(spec_version)
        self._pending_spec = spec_version

    def key(self, item: str, params: Iterable = (), pallet: str = "SubtensorModule") -> bytes:
        return bytes(self.runtime.storage_key(pallet, item, list(params)))

    def set(self, item: str, params: Iterable, value: Any, pallet: str = "SubtensorModule") -> None:
        """Encode ``value`` as the item's value type and store it in the pending block."""
        rt = self.runtime
        encoded = rt.encode(rt.storage_entry(pallet, item).value_type, value)
        self.set_raw(self.key(item, params, pallet), encoded)

    def set_many(
        self, item: str, entries: Iterable[tuple[Iterable, Any]], pallet: str = "SubtensorModule"
    ) -> int:
        """``set`` for many (params, value) pairs of one item; returns the count.

        One key-batch call instead of one per entry: this is what keeps a
        mainnet-sized build fast.
        """
        entries = list(entries)
        if not entries:
            return 0
        rt = self.runtime
        value_type = rt.storage_entry(pallet, item).value_type
        keys = rt.storage_key_batch(pallet, item, [list(params) for params, _ in entries])
        with self._lock:
            for key, (_, value) in zip(keys, entries):
                self._put(bytes(key), bytes(rt.encode(value_type, value)))
        return len(entries)

    def set_raw(self, key: bytes, value: bytes) -> None:
        """Store raw bytes (e.g. deliberately undecodable ones for fault tests)."""
        with self._lock:
            self._put(bytes(key), bytes(value))

    def _put(self, key: bytes, value: bytes) -> None:
        old = self._pending.get(key)
        if old is None:
            self._keys_changed = True
            self._touched.add(key)
        if old != value:
            self._dirty = True
            self._pending[key] = value

    def delete(self, item: str, params: Iterable = (), pallet: str = "SubtensorModule") -> None:
        key = self.key(item, params, pallet)
        with self._lock:
            if self._pending.pop(key, None) is not None:
                self._keys_changed = self._dirty = True
                self._touched.add(key)

    def get_raw(
        self, item: str, params: Iterable = (), pallet: str = "SubtensorModule"
    ) -> Optional[bytes]:
        """The pending block's raw value bytes, or None."""
        return self._pending.get(self.key(item, params, pallet))

    def get(self, item: str, params: Iterable = (), pallet: str = "SubtensorModule") -> Any:
        """The pending block's decoded value, or None when absent."""
        raw = self.get_raw(item, params, pallet)
        if raw is None:
            return None
        rt = self.runtime
        return rt.decode(rt.storage_entry(pallet, item).value_type, raw)

    @property
    def pending_size(self) -> int:
        return len(self._pending)

    # -- events (pending block) --------------------------------------------------

    def emit(
        self, pallet: str, variant: str, fields: Any, *, extrinsic: Optional[int] = None, phase: Optional[str] = None
    ) -> Optional[int]:
        """Deposit an event in the pending block; returns its extrinsic index (None in a block-step phase).

        ``fields``: a list in the metadata's order, or a dict by field name / type
        name (see ``simnode.events``). By default the event is the only one of a new
        extrinsic (indexes 1, 2, ... in order; 0 is the timestamp inherent);
        ``extrinsic=i`` adds it to extrinsic ``i`` of this block; ``phase``
        "Initialization" (subtensor's block step, e.g. an applied child set) or
        "Finalization" puts it outside any extrinsic. Each extrinsic also gets the
        chain's closing ``System.ExtrinsicSuccess``.
        """
        event_record(self.runtime, "Initialization", pallet, variant, fields)  # fails here, not at commit
        if phase is not None:
            if phase not in ("Initialization", "Finalization") or extrinsic is not None:
                raise ValueError("phase is 'Initialization' or 'Finalization', without an extrinsic")
            where: Any = phase
            index = None
        else:
            if extrinsic is None:
                extrinsic, self._next_extrinsic = self._next_extrinsic, self._next_extrinsic + 1
            elif not 1 <= extrinsic < self._next_extrinsic:
                raise ValueError(f"extrinsic {extrinsic} is not in the pending block (next is {self._next_extrinsic})")
            where = index = extrinsic
        self._pending_events.append((where, pallet, variant, fields))
        return index

    def _encode_events(self, spec_version: int) -> Optional[bytes]:
        """The pending block's System.Events, or None for an idle block's (the timestamp's alone)."""
        if not self._pending_events:
            return None
        runtime = runtime_for(spec_version)
        records = [r for r in self._pending_events if r[0] == "Initialization"]
        ordered = [event_record(runtime, "Initialization", *r[1:]) for r in records]
        ordered.append(extrinsic_success(runtime, 0, mandatory=True))
        for index in range(1, self._next_extrinsic):
            phase = {"ApplyExtrinsic": index}
            ordered += [event_record(runtime, phase, *r[1:]) for r in self._pending_events if r[0] == index]
            ordered.append(extrinsic_success(runtime, index))
        ordered += [event_record(runtime, "Finalization", *r[1:]) for r in self._pending_events if r[0] == "Finalization"]
        return encode_events(runtime, ordered)

    # -- blocks ----------------------------------------------------------------

    def commit_block(self) -> tuple[int, str]:
        """Freeze the pending storage and events into the next block; returns (number, hash)."""
        self._freeze()
        number = self._count - 1
        return number, self._hash(number)

    def advance(self, blocks: int) -> tuple[int, str]:
        """Commit ``blocks`` blocks (the first with whatever is pending); returns the last (number, hash).

        A block with no storage change shares the storage of the one before it,
        so a month of idle blocks costs little more than their count.
        """
        if blocks < 1:
            raise ValueError("advance at least one block")
        for _ in range(blocks):
            self._freeze()
        number = self._count - 1
        return number, self._hash(number)

    def _timestamp_ms(self, number: int) -> int:
        if self._wall_clock:
            stamp = max(int(time.time() * 1000), self._last_ms + 1)  # never backwards, as the chain's
        else:
            stamp = GENESIS_TIME_MS + number * BLOCK_TIME_MS
        self._last_ms = stamp
        return stamp

    def _freeze(self) -> None:
        with self._lock:
            number = self._count
            spec = self._pending_spec
            if number:
                stamp = self._timestamp_ms(number)
                if _NOW_KEY not in self._pending:
                    self._keys_changed = True
                    self._touched.add(_NOW_KEY)
                self._pending[_NOW_KEY] = struct.pack("<Q", stamp)  # Timestamp.Now: what the next block reads
                events = self._encode_events(spec)
                if events is not None:
                    self._events[number] = events
            else:
                stamp = GENESIS_TIME_MS
            self._pending_events = []
            self._next_extrinsic = 1
            last = self._segments[-1] if self._segments else None
            if last is None or self._dirty or self._keys_changed or last.spec_version != spec:
                # Copy-on-change: the segment owns its dict, the pending one stays mutable.
                storage = dict(self._pending)
                if self._keys_changed or last is None:
                    keys = self._key_list(storage, last, number)
                else:
                    keys = last.keys  # same key set: share the sorted list
                self._segments.append(_Segment(number, storage, keys, spec))
                self._firsts.append(number)
            self._dirty = self._keys_changed = False
            self._touched = set()
            if self._stamps is not None:
                self._stamps.append(stamp)
            self._count = number + 1  # last: readers on the server thread see a complete block

    def _key_list(self, storage: dict[bytes, bytes], last: Optional[_Segment], number: int) -> list[bytes]:
        """The block's sorted keys: the last segment's list with the keys added or deleted since,
        or sorted afresh when most changed. Sorting a mainnet-sized state again took ~0.2 s a
        block; a block step that adds or deletes a few keys now costs a few milliseconds."""
        if last is None or not last.first or len(self._touched) * 64 > len(last.keys):
            return sorted(set(storage) | ({EVENTS_KEY} if number else set()))
        keys = list(last.keys)  # has EVENTS_KEY: the segment is after genesis
        for key in self._touched:
            index = bisect.bisect_left(keys, key)
            listed = index < len(keys) and keys[index] == key
            if key in storage or key == EVENTS_KEY:
                if not listed:
                    keys.insert(index, key)
            elif listed:
                del keys[index]
        return keys

    def _hash(self, number: int) -> str:
        if number == 0:
            return self.genesis_hash
        # The number rides in the hash's last 4 bytes, so a hash finds its block
        # without a table of every hash (a month of blocks stays small).
        digest = hashlib.blake2b(f"{self._salt}:{number}".encode(), digest_size=28)
        return "0x" + digest.hexdigest() + f"{number:08x}"

    @property
    def head(self) -> Block:
        return self._block(self._count - 1)

    @property
    def genesis(self) -> Block:
        return self._block(0)

    @property
    def finalized(self) -> Block:
        head = self._count - 1
        return self._block(max(0, head - max(0, self.finalized_lag)))

    def block(self, number: int) -> Optional[Block]:
        return self._block(number) if 0 <= number < self._count else None

    def block_by_hash(self, block_hash: str) -> Optional[Block]:
        block_hash = block_hash.lower()
        if len(block_hash) != 66:
            return None
        if block_hash == self.genesis_hash:
            return self._block(0)
        try:
            number = int(block_hash[-8:], 16)
        except ValueError:
            return None
        if number >= self._count or self._hash(number) != block_hash:
            return None
        return self._block(number)

    def state_discarded(self, block: Block) -> bool:
        """Whether a pruning node has discarded ``block``'s state (always False on an archive)."""
        return self.state_pruning is not None and block.number < self._count - 1 - self.state_pruning

    def events_at(self, number: int) -> list[dict]:
        """Block ``number``'s System.Events, decoded (what the SDK's event decoding returns)."""
        block = self.block(number)
        if block is None or not block.events:
            return []
        rt = runtime_for(block.spec_version)
        return rt.decode(rt.storage_entry("System", "Events").value_type, block.events)

    def storage_changes(self, keys: list[bytes], first: int, last: int) -> Iterator[tuple[int, list]]:
        """(block number, [(key, value or None), ...]) for blocks ``first``..``last`` as
        Substrate's ``state_queryStorage`` computes them: the first block lists every
        key, later ones only the keys whose value differs from the block before, and
        blocks where none changed are left out. One pass over the compact record."""
        previous: dict[bytes, Optional[bytes]] = {}
        index = bisect.bisect_right(self._firsts, first) - 1
        for number in range(first, last + 1):
            while index + 1 < len(self._firsts) and self._firsts[index + 1] <= number:
                index += 1
            segment = self._segments[index]
            changes = []
            for key in keys:
                if number and key == _NOW_KEY:
                    stamp = self._stamps[number] if self._stamps is not None else GENESIS_TIME_MS + number * BLOCK_TIME_MS
                    value: Optional[bytes] = struct.pack("<Q", stamp)
                elif number and key == EVENTS_KEY:
                    value = self._events.get(number) or _idle_events(segment.spec_version)
                else:
                    value = segment.storage.get(key)
                if key not in previous or previous[key] != value:
                    changes.append((key, value))
                    previous[key] = value
            if changes:
                yield number, changes

    def _block(self, number: int) -> Block:
        segment = self._segments[bisect.bisect_right(self._firsts, number) - 1]
        if number == 0:
            stamp, events, overlay = GENESIS_TIME_MS, b"", {}
        else:
            stamp = self._stamps[number] if self._stamps is not None else GENESIS_TIME_MS + number * BLOCK_TIME_MS
            events = self._events.get(number) or _idle_events(segment.spec_version)
            overlay = {_NOW_KEY: struct.pack("<Q", stamp), EVENTS_KEY: events}
        return Block(
            number=number,
            hash=self._hash(number),
            parent_hash=self._hash(number - 1) if number else ZERO_HASH,
            spec_version=segment.spec_version,
            timestamp_ms=stamp,
            storage=BlockStorage(segment.storage, overlay),
            keys=segment.keys,
            events=events,
        )


def _idle_events(spec_version: int) -> bytes:
    """System.Events of a block with no extrinsic but the timestamp (shared by every idle block)."""
    found = _idle.get(spec_version)
    if found is None:
        runtime = runtime_for(spec_version)
        found = _idle[spec_version] = encode_events(runtime, [extrinsic_success(runtime, 0, mandatory=True)])
    return found


_idle: dict[int, bytes] = {}
