"""Prepare, once per refresh, the bytes every scrape of that snapshot will send.

The snapshot part is gzip-compressed once; each scrape appends its small live
self-metrics by continuing a copy of the same compressor, so a gzip scrape is
one valid gzip member without recompressing megabytes.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from exporter.serving.exposition import render_snapshot
from exporter.snapshot.model import Snapshot

# Measured on the mainnet-scale exposition (11.7 MB; BENCHMARKS.md, `python -m
# bench.gzip_levels`): level 1 takes half the CPU of zlib's default 6 (~65 vs
# ~135 ms per refresh, on the refresh's critical path) for 13 % more bytes
# (2.52 vs 2.23 MB). Levels 2-3 compress no better than 1; 4-5 cost most of 6.
GZIP_LEVEL = 1
_GZIP_WBITS = 31  # 16 + 15: a gzip header and trailer around a deflate stream


@dataclass(frozen=True)
class Payload:
    snapshot: Snapshot
    plain: bytes
    gzip_head: bytes
    _compressor: "zlib._Compress" = field(repr=False)

    def gzip_tail(self, extra: bytes) -> bytes:
        """The rest of the gzip stream after ``gzip_head``, carrying ``extra``."""
        compressor = self._compressor.copy()
        return compressor.compress(extra) + compressor.flush()


def prepare_payload(snapshot: Snapshot, extra: bytes = b"") -> Payload:
    """``extra``: more refresh-time exposition (the change counters) sent after the snapshot."""
    plain = render_snapshot(snapshot, extra)
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, _GZIP_WBITS)
    head = compressor.compress(plain) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return Payload(snapshot=snapshot, plain=plain, gzip_head=head, _compressor=compressor)
