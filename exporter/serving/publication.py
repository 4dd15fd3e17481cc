"""One refresh's publication: everything a scrape serves, prepared once and never changed.

The refresh thread builds a new ``Publication`` after every refresh, good or
failed, and swaps one reference to it; an HTTP thread reads that reference
once per request, so every line of one page comes from the same refresh.

The snapshot part is rendered and gzip-compressed once per refresh, chunk by
chunk (``exposition.render_chunks``): the chunks of a family on 32 subnets make
one gzip member, and a member whose chunks did not change since the last
refresh is kept as it was.
A concatenation of gzip members is one gzip stream (RFC 1952 2.2; Python's
``gzip``, Go's ``compress/gzip`` as Prometheus uses it, and curl read it whole).
Each scrape appends the status and the small live process metrics as one more
member, so a gzip scrape never recompresses megabytes.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from itertools import groupby
from typing import Optional

from exporter.serving.chunks import Rendering
from exporter.serving.exposition import EVERYTHING, render_chunks
from exporter.snapshot.model import Snapshot

# A refresh compresses only the members whose chunks changed (about two in five on a
# steady mainnet refresh), so a thorough level costs little: measured with `python -m
# bench.gzip_members` (BENCHMARKS.md) on the mainnet-scale chain and on one with twice the
# child edges (66,000 series), level 5 in members of 32 subnets serves 1.84 / 2.39 MB where
# level 1 in members of 8 served 2.18 / 2.78 MB, for about 25-30 ms more compression CPU on
# a steady refresh. Level 6 saves 0.5 % more for 10-15 % more CPU; larger members compress
# better (each starts with an empty window) but a changed subnet recompresses all of its
# member.
GZIP_LEVEL = 5
# The small member every scrape appends (status and live metrics) is compressed per scrape.
SCRAPE_GZIP_LEVEL = 1
_GZIP_WBITS = 31  # 16 + 15: a gzip header and trailer around a deflate stream
SUBNETS_PER_MEMBER = 32

Member = tuple[tuple, tuple[bytes, ...], bytes]  # (key, the chunks' texts, their gzip member)


def gzip_member(text: bytes, level: int = SCRAPE_GZIP_LEVEL) -> bytes:
    """``text`` as one gzip member (nothing for no text)."""
    if not text:
        return b""
    compressor = zlib.compressobj(level, zlib.DEFLATED, _GZIP_WBITS)
    return compressor.compress(text) + compressor.flush()


@dataclass(frozen=True)
class RenderedSnapshot:
    """A snapshot's exposition (and the change counters after it), plain and gzip, with its chunks."""

    snapshot: Snapshot
    plain: bytes
    gzip_head: bytes  # one gzip member per chunk, concatenated
    rendering: Optional[Rendering] = field(default=None, repr=False)
    members: tuple[Member, ...] = field(default=(), repr=False)  # gzip_head's members, in order

    def gzip_tail(self, extra: bytes) -> bytes:
        """The rest of the gzip stream after ``gzip_head``, carrying ``extra``: one more member."""
        return gzip_member(extra)


def render(snapshot: Snapshot, extra: bytes = b"", collectors: frozenset = EVERYTHING,
           previous: Optional[RenderedSnapshot] = None) -> RenderedSnapshot:
    """``extra``: more refresh-time exposition (the change counters) sent after the snapshot.
    ``previous``: the last refresh's, whose unchanged chunks are reused, text and gzip member."""
    before = previous.rendering if previous is not None else None
    rendering = render_chunks(snapshot, extra, collectors, before)
    kept = {key: (texts, member) for key, texts, member in previous.members} if previous is not None else {}
    members: list[Member] = []
    seen: dict[tuple, int] = {}
    for group, chunks in groupby(zip(rendering.keys, rendering.texts), lambda chunk: _member_group(chunk[0])):
        texts = tuple(text for _, text in chunks)
        key = (*group, seen.setdefault(group, 0))
        seen[group] += 1
        old = kept.get(key)
        # Tuple equality takes a text that is the same object as equal at once: a reused chunk costs nothing.
        member = old[1] if old is not None and old[0] == texts else gzip_member(b"".join(texts), GZIP_LEVEL)
        members.append((key, texts, member))
    return RenderedSnapshot(snapshot=snapshot, plain=rendering.text(), gzip_head=b"".join(m for _, _, m in members),
                            rendering=rendering, members=tuple(members))


def _member_group(chunk_key: tuple) -> tuple:
    """The gzip member a chunk goes in: its family's, on its group of subnets."""
    group = chunk_key[1] if len(chunk_key) > 1 else None
    if type(group) is int:
        return (chunk_key[0], group // SUBNETS_PER_MEMBER)
    return (chunk_key[0],)


@dataclass(frozen=True)
class Publication:
    """What scrapes serve until the next refresh replaces it."""

    generation: int  # refreshes finished, good or not
    up: bool  # whether the refresh that made this publication succeeded
    data: Optional[RenderedSnapshot]  # the last good snapshot; None before the first
    status: bytes  # the exporter's status, with the snapshot served
    status_withdrawn: bytes  # the same status as served once the snapshot is withdrawn
    last_success: Optional[float]  # unix time of the refresh that produced ``data``
    stale_after_seconds: float
    withdraw_after_seconds: float

    def serves_snapshot(self, now: float) -> bool:
        """The last good snapshot is served until it is too old to be trusted.

        Past ``withdraw_after_seconds`` its per-validator series are withdrawn
        (the status, with up 0 and the last success time, remains) so
        dashboards show a gap instead of numbers that may be hours wrong.
        """
        return self.data is not None and self.last_success is not None and now - self.last_success <= self.withdraw_after_seconds

    def is_fresh(self, now: float) -> bool:
        """Whether the last successful refresh is recent enough to trust (``/healthz``)."""
        return self.last_success is not None and now - self.last_success <= self.stale_after_seconds

    def body(self, now: float, live: bytes, gzip: bool) -> list[bytes]:
        """The chunks of one ``/metrics`` response: snapshot (while trusted), status, ``live``."""
        if self.serves_snapshot(now):
            assert self.data is not None
            if gzip:
                return [self.data.gzip_head, self.data.gzip_tail(self.status + live)]
            return [self.data.plain, self.status, live]
        text = self.status_withdrawn + live
        return [zlib.compress(text, wbits=_GZIP_WBITS)] if gzip else [text]


def first_publication(status: bytes, stale_after_seconds: float, withdraw_after_seconds: float) -> Publication:
    """What is served before the first refresh finishes: the status alone."""
    return Publication(0, False, None, status, status, None, stale_after_seconds, withdraw_after_seconds)
