"""Run a simulated node in the foreground: ``python -m simnode --scenario demo``."""

from __future__ import annotations

import argparse
import signal
import threading

from simnode.scenarios import SCENARIOS
from simnode.server import SimNode
from simnode.state import METADATA_FILES, SIMNODE_GENESIS_HASH, ChainState


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simnode", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9944, help="0 picks a free port")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="demo")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="per-frame delay")
    parser.add_argument("--spec-version", type=int, choices=sorted(METADATA_FILES), default=393)
    parser.add_argument("--finalized-lag", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0, help="random seed of the scenario's chain state")
    parser.add_argument("--genesis-hash", default=SIMNODE_GENESIS_HASH,
                        help="block 0's hash: the chain.genesis_hash an exporter reading this node is given")
    args = parser.parse_args(argv)

    try:
        state = ChainState(args.spec_version, genesis_hash=args.genesis_hash)
    except ValueError as error:
        parser.error(f"--genesis-hash: {error}")
    state.finalized_lag = args.finalized_lag
    builder = SCENARIOS[args.scenario]
    builder(state) if args.scenario == "empty" else builder(state, seed=args.seed)

    stop = threading.Event()
    # Both signals just wake the main thread, which then shuts the node down.
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with SimNode(state, args.host, args.port, latency=args.latency_ms / 1000) as node:
        head = state.head
        print(
            f"{node.url} scenario={args.scenario} spec={head.spec_version} "
            f"head=#{head.number} entries={len(head.storage)}",
            flush=True,
        )
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
