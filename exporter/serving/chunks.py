"""The exposition as keyed chunks, each rendered again only when its inputs changed.

A chunk is a family's HELP/TYPE header, or the series of one family on one
subnet (one run of equal group keys). Its key names the family and the group;
its inputs are exactly what its text is made of (the label sets and a key of
the values that is equal only when their text is), so a chunk whose key and
inputs equal the previous refresh's is the previous text, byte for byte.
Between two mainnet refreshes most subnets' numbers do not move, and rendering
(``repr`` of floats, mostly) and compressing (``publication``) them again would
be most of the work.
"""

from __future__ import annotations

import marshal
from array import array
from dataclasses import dataclass, fields
from itertools import groupby
from operator import attrgetter, is_
from typing import Any, Callable, Hashable, Iterable, Optional, Sequence

Key = tuple


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def numbers(values: Sequence[float]) -> Iterable[str]:
    """``_number`` of every value; a column of only ints and floats takes C's ``repr``, the same text."""
    if set(map(type, values)) <= {int, float}:
        return map(repr, values)
    return map(_number, values)


def value_key(values: Sequence[float]) -> Any:
    """Equal for two columns exactly when their rendered text is: floats by their bits
    (so 0.0 and -0.0 differ, as their text does), ints by value, anything else by its text."""
    types = set(map(type, values))
    if types == {float}:
        return array("d", values).tobytes()
    if types <= {int}:
        return tuple(values)
    return tuple(numbers(values))


def runs(groups: Sequence[Hashable]) -> list[tuple[Hashable, int, int]]:
    """(group, start, end) of each run of equal consecutive groups."""
    found, start = [], 0
    for group, members in groupby(groups):
        end = start + len(list(members))
        found.append((group, start, end))
        start = end
    return found


class Runs:
    """Snapshot records (frozen dataclasses of numbers and strings) sorted by group, cut into
    runs of one group, with each run's inputs (``RunInputs``). Shared by every family drawn
    from the records, so an unchanged run costs no labels, values or text at all."""

    def __init__(self, records: Sequence[Any], group_of: Callable[[Any], Hashable]) -> None:
        self.records = records
        self.spans = runs(list(map(group_of, records)))
        values_of = attrgetter(*(f.name for f in fields(records[0]))) if records else None
        self.inputs = [RunInputs(tuple(records[start:end]), values_of) for _, start, end in self.spans]


class RunInputs:
    """What a run's text is made of: its records. Equal to another run's when the records are
    the very same objects (the snapshot builder hands an unchanged validator's record on from
    the last snapshot, and a frozen record of numbers and strings has one text), or else when
    the exact values of every field are (``marshal``: types kept, floats by their bits, so
    0.0 and -0.0 differ as their text does), serialized only when that comparison is needed."""

    __slots__ = ("records", "_values_of", "_serialized")

    def __init__(self, records: tuple, values_of: Optional[Callable[[Any], tuple]]) -> None:
        self.records, self._values_of, self._serialized = records, values_of, None

    def serialized(self) -> bytes:
        if self._serialized is None:
            self._serialized = marshal.dumps(tuple(map(self._values_of, self.records)), 2) if self.records else b""
        return self._serialized

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RunInputs):
            return NotImplemented
        mine, theirs = self.records, other.records
        if len(mine) == len(theirs) and all(map(is_, mine, theirs)):
            return True
        return self.serialized() == other.serialized()

    __hash__ = None  # type: ignore[assignment] - compared, never a key


def lines(name: str, labels: Sequence[str], values: Sequence[float]) -> bytes:
    """A family's series, ``name{labels} value`` a line (nothing for none)."""
    return _lines(name, labels, values) if labels else b""


def _lines(name: str, labels: Sequence[str], values: Sequence[float]) -> bytes:
    # name{labels} value, one a line, joined in C rather than formatted line by line.
    return (f"{name}{{" + f"\n{name}{{".join(map("} ".join, zip(labels, numbers(values)))) + "\n").encode()


@dataclass(frozen=True)
class Rendering:
    """One exposition: its chunks' keys, inputs and texts, in order."""

    keys: tuple[Key, ...]
    inputs: tuple[Any, ...]
    texts: tuple[bytes, ...]
    rendered: int  # chunks rendered for this one; the others are the previous rendering's texts

    def text(self) -> bytes:
        return b"".join(self.texts)


class ChunkWriter:
    """Collects chunks in exposition order, taking each unchanged one from ``previous``."""

    def __init__(self, previous: Optional[Rendering] = None) -> None:
        self._previous = dict(zip(previous.keys, zip(previous.inputs, previous.texts))) if previous else {}
        self._keys: list[Key] = []
        self._inputs: list[Any] = []
        self._texts: list[bytes] = []
        self._rendered = 0

    def chunk(self, key: Key, inputs: Any, render: Callable[..., bytes], *args: Any) -> None:
        """A chunk whose text is ``render(*args)``, a function of ``key`` and ``inputs`` alone."""
        before = self._previous.get(key)
        if before is not None and before[0] == inputs:
            text = before[1]
        else:
            text = render(*args)
            self._rendered += 1
        self._keys.append(key)
        self._inputs.append(inputs)
        self._texts.append(text)

    def series(self, name: str, labels: Sequence[str], values: Sequence[float],
               groups: Optional[Sequence[Hashable]] = None) -> None:
        """A family's series, one chunk per run of equal ``groups`` (one chunk without)."""
        labels = tuple(labels)
        spans = runs(groups) if groups is not None else [(None, 0, len(labels))]
        seen: dict[Hashable, int] = {}
        for group, start, end in spans:
            nth = seen[group] = seen.get(group, -1) + 1  # a group split in two runs keeps two keys
            labels_of, values_of = labels[start:end], values[start:end]
            self.chunk((name, group, nth), (labels_of, value_key(values_of)), _lines, name, labels_of, values_of)

    def records(self, name: str, runs: Runs, render: Callable[[str, Sequence[Any]], bytes]) -> None:
        """A family's series drawn from ``runs``' records: a chunk per run, ``render(name, records)``
        only for a run whose records changed."""
        seen: dict[Hashable, int] = {}
        for (group, start, end), inputs in zip(runs.spans, runs.inputs):
            nth = seen[group] = seen.get(group, -1) + 1
            self.chunk((name, group, nth), inputs, render, name, runs.records[start:end])

    def finish(self) -> Rendering:
        return Rendering(tuple(self._keys), tuple(self._inputs), tuple(self._texts), self._rendered)
