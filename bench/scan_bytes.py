"""``python -m bench.scan_bytes [scenario]``: what one read's map scans hold, against ``chain.max_scan_bytes``.

A chain reader in this process reads the scenario (``mainnet`` by default; ``larger`` is issue
15's chain) from the simulated node in its own process, and prints the bytes of keys and values
(hex, as answered) each map's scan took of the read's ``ScanBudget``, the entries of the link
maps, and how many times over the default budget holds them. docs/bounds.md quotes it.
"""

from __future__ import annotations

import asyncio
import sys

from bittensor._transport.interface import SubstrateConnection

from bench.node_side import NodeSide
from bench.workers import Worker
from exporter.chain.reader import ChainReader
from exporter.chain.storage import DEFAULT_MAX_SCAN_BYTES
from exporter.config import ScopeConfig


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    scenario = args[0] if args else "mainnet"
    with Worker(NodeSide, scenario, 0) as node:
        used, by_item, read = asyncio.run(_read(node.call("info")["url"]))
    print(f"{scenario}: the map scans of one read took {used / 1e6:.2f} MB "
          f"({DEFAULT_MAX_SCAN_BYTES / used:.0f}x fit the default chain.max_scan_bytes)")
    for item, count in sorted(by_item.items(), key=lambda kv: -kv[1]):
        print(f"  {item:<32} {count / 1e6:8.3f} MB")
    print(f"  ChildKeys entries {len(read.children)} ({sum(map(len, read.children.values()))} edges), "
          f"ParentKeys entries {len(read.parents)}, PendingChildKeys entries {len(read.pending)}")
    return 0


async def _read(url: str):
    conn = SubstrateConnection(url, fallback_urls=[], max_retries=1, response_timeout=60)
    await conn.initialize()
    try:
        reader = ChainReader(max_in_flight=32)
        source, block, spec_version = await reader.open_finalized(conn)
        read = await reader.read_from(source, ScopeConfig(), block=block, spec_version=spec_version)
        return source.budget.used, source.budget.by_item, read
    finally:
        await conn.close()


if __name__ == "__main__":
    raise SystemExit(main())
