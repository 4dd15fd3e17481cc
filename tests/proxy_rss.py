"""Peak memory of an exporter process whose endpoint answers every key page with another full page of made-up keys
(or, with ``--poison``, poisons it another way: a header 1,000 blocks ahead, a header number of u32::MAX,
Timestamp.Now of u64::MAX, another chain behind the same URL).

    .venv/bin/python -m tests.proxy_rss [--scenario tricky|demo|mainnet] [--refreshes 3] [--oversized MB] [--poison MODE]

With ``--oversized``, every key page is instead one answer of that many MB (a string), as
from an endpoint with no response limit: what ``chain.max_response_bytes`` stops.

A simulated node and a corrupting proxy (``simnode.proxy.endless_pages``,
made-up values included, so only the scan caps stop the paging) run in this
process; the exporter runs as its own process (``python -m exporter``), with
the caps it ships with. Printed: the exporter's VmHWM (peak RSS) after its
first good refresh, after each refused refresh, and after the refresh that
follows once the proxy is honest again, with the keys the proxy listed and
the time each refresh took. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from simnode import SIMNODE_GENESIS_HASH, ChainState, SimNode
from simnode.proxy import CorruptingProxy, endless_pages, header_number, oversized, replace_result, replace_values
from simnode.scenarios import demo
from tests.conftest import write_tricky_chain

REPO = Path(__file__).resolve().parent.parent


def vm_hwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


POISONS = ("endless-pages", "header-ahead", "header-u32-max", "timestamp-u64-max", "other-chain", "vector-bomb")
# The per-uid vectors read in bulk (one request per item for every subnet).
BOMBED_VECTORS = ("ValidatorTrust", "Dividends", "Active", "LastUpdate", "Emission")
RESPONSE_HEX = 14 << 20  # under chain.max_response_bytes (15 MiB): every answer is let through


def _compact(n: int) -> str:
    """SCALE compact length, canonical (the codec refuses a longer form than needed)."""
    if n < 1 << 6:
        return (n << 2).to_bytes(1, "little").hex()
    if n < 1 << 14:
        return ((n << 2) | 0b01).to_bytes(2, "little").hex()
    return ((n << 2) | 0b10).to_bytes(4, "little").hex()


def vector_bomb(state: ChainState):
    """Every answer for a per-uid vector filled up to the response cap with 0xff elements: as many
    elements as one answer can carry, each a distinct object once decoded."""
    prefixes = {"0x" + state.key(item, []).hex(): item for item in BOMBED_VECTORS}
    widths = {"ValidatorTrust": 2, "Dividends": 2, "Active": 1, "LastUpdate": 8, "Emission": 8}

    def rewrite(params: list, result):
        for group in result or []:
            bombed = [k for k, _ in group["changes"] if any(k.startswith(p) for p in prefixes)]
            if not bombed:
                continue
            item = next(prefixes[p] for p in prefixes if bombed[0].startswith(p))
            count = RESPONSE_HEX // len(bombed) // (2 * widths[item])
            length = _compact(count)
            value = "0x" + length + ("01" if item == "Active" else "ff" * widths[item]) * count
            group["changes"] = [[k, value if k in bombed else v] for k, v in group["changes"]]
        return result

    return lambda method, params, result: rewrite(params, result) if method == "state_queryStorageAt" else result


def poison(mode: str, state: ChainState, proxy: CorruptingProxy, other_url: str):
    """The proxy's hook for ``mode`` (for other-chain: none, the proxy's next connections go to another chain)."""
    if mode == "vector-bomb":
        return vector_bomb(state)
    if mode == "header-ahead":
        return header_number(hex(state.finalized.number + 1000))
    if mode == "header-u32-max":
        return header_number(hex(2**32 - 1))
    if mode == "timestamp-u64-max":
        return replace_values({"0x" + state.key("Now", [], "Timestamp").hex(): "0x" + "ff" * 8})
    proxy.upstream = other_url  # the exporter reconnects after a failed read: to another chain
    return replace_result("chain_getFinalizedHead", None)  # fails the read under way


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=("tricky", "demo", "mainnet"), default="tricky")
    parser.add_argument("--refreshes", type=int, default=3, help="refused refreshes to watch")
    parser.add_argument("--maps", default="", help="comma-separated items whose pages are endless (default: every map)")
    parser.add_argument("--null", action="store_true", help="answer state_queryStorageAt with null instead (a cheap refusal)")
    parser.add_argument("--oversized", type=int, default=0, metavar="MB", help="answer every key page with this many MB instead")
    parser.add_argument("--poison", choices=POISONS, default="endless-pages")
    args = parser.parse_args()

    state = ChainState()
    if args.scenario == "mainnet":
        from simnode.scenarios import mainnet_scale

        mainnet_scale(state)
    else:
        write_tricky_chain(state) if args.scenario == "tricky" else demo(state)
    work = Path(tempfile.mkdtemp(prefix="proxy-rss-"))
    other_chain = ChainState(genesis_hash="0x" + "0e" * 32)
    write_tricky_chain(other_chain)
    with SimNode(state) as node, CorruptingProxy(node.url) as proxy, SimNode(other_chain) as other:
        config = {
            "chain": {"endpoints": [proxy.url], "timeout_seconds": 30, "genesis_hash": SIMNODE_GENESIS_HASH},
            "refresh": {"interval_seconds": 1, "timeout_seconds": 120},
            "scope": {"min_stake_weight": 100},
            "history": {"path": str(work / "history.db")},
            "web": {"listen_address": f"127.0.0.1:{free_port()}"},
            "log": {"level": "info", "format": "json"},
        }
        (work / "config.yaml").write_text(yaml.safe_dump(config))
        exporter = subprocess.Popen(
            [sys.executable, "-m", "exporter", "--config.file", str(work / "config.yaml")],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={"BITTENSOR_RUNTIME_CACHE_DIR": str(work / "runtime-cache"), "PATH": "/usr/bin:/bin"},
        )
        lines: "queue.Queue[dict]" = queue.Queue()

        def pump() -> None:
            for line in exporter.stderr:
                try:
                    lines.put(json.loads(line))
                except ValueError:
                    pass

        threading.Thread(target=pump, daemon=True).start()

        def next_refresh(timeout: float = 180) -> dict:
            """The next log line that ends a refresh (success or failure)."""
            deadline = time.monotonic() + timeout
            while True:
                entry = lines.get(timeout=max(0.1, deadline - time.monotonic()))
                if entry.get("event") in ("refresh", "refresh failed", "refresh held back, needs confirmation"):
                    return entry

        ticking = threading.Event()

        def tick() -> None:
            """A new block every half second: a forged header is fetched anew (the SDK keeps a block's number by hash)."""
            while not ticking.wait(0.5):
                state.commit_block()

        threading.Thread(target=tick, daemon=True).start()
        try:
            first = next_refresh()
            assert first["event"] == "refresh", first
            print(f"good refresh        VmHWM {vm_hwm_kb(exporter.pid) / 1024:7.1f} MB  ({first['duration_seconds']} s)")
            maps = [m for m in args.maps.split(",") if m]
            prefixes = ["0x" + state.key(item, []).hex() for item in maps] or None
            proxy.corrupt = endless_pages(prefixes=prefixes)
            print(f"endless pages under {', '.join(maps) or 'every map'}")
            if args.null:
                proxy.corrupt = replace_result("state_queryStorageAt", None)
                print("null answers instead")
            if args.oversized:
                proxy.corrupt = oversized("state_getKeysPaged", args.oversized * 2**20)
                print(f"key pages of {args.oversized} MB instead")
            if args.poison != "endless-pages":
                proxy.corrupt = poison(args.poison, state, proxy, other.url)
                print(f"poisoned instead: {args.poison}")
            for i in range(args.refreshes):
                proxy.reset_counters()
                started = time.monotonic()
                entry = next_refresh()
                print(f"poisoned #{i + 1}         VmHWM {vm_hwm_kb(exporter.pid) / 1024:7.1f} MB  "
                      f"{entry['event']}: reason={entry.get('reason')} rule={entry.get('rule')} "
                      f"keys listed {proxy.keys_listed}, getKeysPaged {proxy.requests['state_getKeysPaged']}, "
                      f"{time.monotonic() - started:.1f} s")
            proxy.corrupt, proxy.upstream = None, node.url
            while (entry := next_refresh())["event"] != "refresh":
                pass  # a refresh already under way when the proxy healed
            print(f"honest again        VmHWM {vm_hwm_kb(exporter.pid) / 1024:7.1f} MB  ({entry['duration_seconds']} s)")
        finally:
            ticking.set()
            exporter.terminate()
            try:
                exporter.wait(timeout=15)
            except subprocess.TimeoutExpired:
                exporter.kill()
                exporter.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
