"""The simulated chain's state: SCALE-encoded storage frozen into numbered blocks.

A test mutates the *pending* storage (``set``/``delete``), then
``commit_block()`` freezes it into a new block. The server only ever reads
committed blocks, so the test thread can keep mutating pending storage while
the node's event loop serves reads.
"""

from __future__ import annotations

import bisect
import hashlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from bittensor_core import Runtime

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


@dataclass(frozen=True)
class Block:
    """One committed block. ``storage``/``keys`` must never be mutated."""

    number: int
    hash: str
    parent_hash: str
    spec_version: int
    timestamp_ms: int
    storage: dict[bytes, bytes] = field(repr=False)
    keys: list[bytes] = field(repr=False)  # sorted, for paging with bisect

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


class ChainState:
    def __init__(self, spec_version: int = 393, *, salt: str = "", wall_clock: bool = False):
        """A chain whose genesis (block 0, empty storage) runs ``spec_version``.

        Block hashes derive from (genesis spec, salt, number), so two chains
        with different genesis specs never share a genesis hash (the SDK keys
        its metadata disk cache on genesis hash + spec version).

        Blocks are stamped GENESIS_TIME_MS + number * BLOCK_TIME_MS, so tests
        know every block's time; with ``wall_clock`` (the demo an operator
        looks at) each block is stamped with the time it is committed, so
        alerts on how recent a change is behave as on a live chain.
        """
        runtime_for(spec_version)  # fail fast on an unknown spec
        self.finalized_lag = 0
        self._wall_clock = wall_clock
        self._last_ms = 0
        self._salt = f"simnode:{spec_version}:{salt}"
        self._lock = threading.Lock()
        self._pending: dict[bytes, bytes] = {}
        self._pending_spec = spec_version
        self._keys_changed = True  # whether the sorted key list must be rebuilt
        self._blocks: list[Block] = []
        self._by_hash: dict[str, Block] = {}
        self._freeze(ZERO_HASH)

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
                key = bytes(key)
                if key not in self._pending:
                    self._keys_changed = True
                self._pending[key] = bytes(rt.encode(value_type, value))
        return len(entries)

    def set_raw(self, key: bytes, value: bytes) -> None:
        """Store raw bytes (e.g. deliberately undecodable ones for fault tests)."""
        with self._lock:
            if key not in self._pending:
                self._keys_changed = True
            self._pending[bytes(key)] = bytes(value)

    def delete(self, item: str, params: Iterable = (), pallet: str = "SubtensorModule") -> None:
        key = self.key(item, params, pallet)
        with self._lock:
            if self._pending.pop(key, None) is not None:
                self._keys_changed = True

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

    # -- blocks ----------------------------------------------------------------

    def commit_block(self) -> tuple[int, str]:
        """Freeze the pending storage into the next block; returns (number, hash)."""
        number = self.head.number + 1
        self.set("Now", [], self._timestamp_ms(number), pallet="Timestamp")
        block = self._freeze(self.head.hash)
        return block.number, block.hash

    def _timestamp_ms(self, number: int) -> int:
        if self._wall_clock:
            stamp = max(int(time.time() * 1000), self._last_ms + 1)  # never backwards, as the chain's
        else:
            stamp = GENESIS_TIME_MS + number * BLOCK_TIME_MS
        self._last_ms = stamp
        return stamp

    def _freeze(self, parent_hash: str) -> Block:
        with self._lock:
            number = len(self._blocks)
            digest = hashlib.blake2b(f"{self._salt}:{number}".encode(), digest_size=32)
            # Copy-on-commit: the block owns its dict, the pending one stays mutable.
            storage = dict(self._pending)
            if self._keys_changed or not self._blocks:
                keys = sorted(storage)
            else:
                keys = self._blocks[-1].keys  # same key set: share the sorted list
            self._keys_changed = False
            block = Block(
                number=number,
                hash="0x" + digest.hexdigest(),
                parent_hash=parent_hash,
                spec_version=self._pending_spec,
                timestamp_ms=self._last_ms if number else GENESIS_TIME_MS,
                storage=storage,
                keys=keys,
            )
            # Append last: readers on the server thread see a complete block.
            self._by_hash[block.hash] = block
            self._blocks.append(block)
            return block

    @property
    def head(self) -> Block:
        return self._blocks[-1]

    @property
    def genesis(self) -> Block:
        return self._blocks[0]

    @property
    def finalized(self) -> Block:
        head = self._blocks[-1]
        return self._blocks[max(0, head.number - max(0, self.finalized_lag))]

    def block(self, number: int) -> Optional[Block]:
        blocks = self._blocks
        return blocks[number] if 0 <= number < len(blocks) else None

    def block_by_hash(self, block_hash: str) -> Optional[Block]:
        return self._by_hash.get(block_hash.lower())
