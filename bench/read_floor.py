"""``python -m bench.read_floor [scenario]``: what one steady read costs, and how much of it is the floor.

A chain reader in this process (as the exporter's, with its GC thresholds) reads the
scenario (``larger`` by default) from the simulated node in its own process, a new block of
moved stakes before each read; after two warm-up reads, five reads are timed. For each, the
read's process CPU, the CPU the SDK's transport spends decoding the answers' JSON (and
encoding the requests), the bytes of answers, and the CPU of the SDK's two bulk decoders (on
a steady read only the values that changed: ``exporter.chain.reuse.ValueCache``).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time

from bittensor._transport import rpc as sdk_rpc
from bittensor._transport.codec import RuntimeCodec
from bittensor._transport.interface import SubstrateConnection

from bench.node_side import NodeSide
from bench.workers import Worker
from exporter.chain.reader import ChainReader
from exporter.config import ScopeConfig


class _TimedJson:
    """The SDK transport's JSON library, timed (process CPU) and counted."""

    def __init__(self, library) -> None:
        self.library, self.decode, self.encode, self.received = library, 0.0, 0.0, 0

    def loads(self, raw):
        started = time.process_time()
        try:
            return self.library.loads(raw)
        finally:
            self.decode += time.process_time() - started
            self.received += len(raw)

    def dumps(self, frame):
        started = time.process_time()
        try:
            return self.library.dumps(frame)
        finally:
            self.encode += time.process_time() - started


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    scenario = args[0] if args else "larger"
    gc.set_threshold(50_000, 20, 10)  # as exporter.cli.prepare_process
    json = _TimedJson(sdk_rpc.json)
    decoding = [0.0]
    batch_decode, decode_map_changes = RuntimeCodec.batch_decode, RuntimeCodec.decode_map_changes

    def timed(function):
        def call(*args, **kwargs):
            started = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                decoding[0] += time.process_time() - started
        return call

    sdk_rpc.json = json
    RuntimeCodec.batch_decode, RuntimeCodec.decode_map_changes = timed(batch_decode), timed(decode_map_changes)
    try:
        with Worker(NodeSide, scenario, 0) as node:
            url = node.call("info")["url"]
            rows = asyncio.run(_reads(node, url, json, decoding))
    finally:
        sdk_rpc.json = json.library
        RuntimeCodec.batch_decode, RuntimeCodec.decode_map_changes = batch_decode, decode_map_changes
    print(f"{scenario}: five steady reads, sorted by CPU")
    for cpu, decode, encode, received, decoders in sorted(rows):
        print(f"read CPU {cpu * 1000:.0f} ms: JSON decoding {decode * 1000:.0f} ms of {received / 1e6:.1f} MB, "
              f"encoding {encode * 1000:.0f} ms, the SDK's decoders {decoders * 1000:.0f} ms")
    return 0


async def _reads(node: Worker, url: str, json: _TimedJson, decoding: list) -> list[tuple]:
    conn = SubstrateConnection(url, fallback_urls=[], max_retries=1, response_timeout=60)
    await conn.initialize()
    try:
        reader = ChainReader(max_in_flight=32)
        for _ in range(2):
            node.call("advance")
            await reader.read(conn, ScopeConfig())
        rows = []
        for _ in range(5):
            node.call("advance")
            json.decode = json.encode = 0.0
            json.received = 0
            decoding[0] = 0.0
            started = time.process_time()
            await reader.read(conn, ScopeConfig())
            rows.append((time.process_time() - started, json.decode, json.encode, json.received, decoding[0]))
        return rows
    finally:
        await conn.close()


if __name__ == "__main__":
    raise SystemExit(main())
