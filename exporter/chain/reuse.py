"""What a read keeps from the read before, by runtime codec: storage keys and decoded values.

Between two refreshes a minute apart the exporter asks nearly the same keys and gets nearly
the same values. Both a key (of an item and its params) and a decoded value (of an item's
type and its raw bytes) are pure functions of the runtime codec, so each is kept across
reads for one codec and found again instead of built or decoded; another codec (a runtime
upgrade, a new connection) starts afresh.
"""

from __future__ import annotations

from itertools import compress, repeat
from operator import is_
from typing import Any, Optional, Sequence

from bittensor._transport.codec import RuntimeCodec
from bittensor._transport.storage import decode_storage_values


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
            return build_keys(codec, entry, params_list)
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
            return build_keys(codec, entry, params_list)
        if None in keys:
            missing = [i for i, key in enumerate(keys) if key is None]
            for i, key in zip(missing, build_keys(codec, entry, [wanted[i] for i in missing])):
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
            return decode_storage_values(codec, entry, [raw_bytes(raw) for raw in raws])
        known = self._tables.setdefault(item, {})
        values = list(map(known.get, raws, repeat(_MISSING)))
        if values.count(_MISSING):
            missing = list(compress(range(len(values)), map(is_, values, repeat(_MISSING))))
            distinct = list(dict.fromkeys([raws[i] for i in missing]))
            fresh = dict(zip(distinct, decode_storage_values(codec, entry, [raw_bytes(raw) for raw in distinct])))
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


def build_keys(codec: RuntimeCodec, entry: Any, params_list: Sequence[Sequence]) -> list[str]:
    return ["0x" + k.hex() for k in codec.storage_key_batch(entry, [list(p) for p in params_list])]


def raw_bytes(value_hex: Optional[str]) -> Optional[bytes]:
    return bytes.fromhex(value_hex[2:]) if value_hex is not None else None
