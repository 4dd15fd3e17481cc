"""The simulated node's process: a scenario, injected latency, request counters, new blocks.

``advance()`` commits the next block with some stakes changed, as on mainnet
between two refreshes (a few subnets run their epoch and pay emissions, a few
nominators stake or unstake): every refresh then reads a new finalized head
and a snapshot whose numbers moved, so nothing downstream can get away with
caching the previous block's work.
"""

from __future__ import annotations

import random
import time
from typing import Any

from simnode import ChainState, SimNode
from simnode.scenarios import SCENARIOS

# Per new block: subnets whose epoch pays emissions, and single stake changes.
EPOCH_SUBNETS_PER_BLOCK = 2
STAKE_CHANGES_PER_BLOCK = 50


class NodeSide:
    def __init__(self, scenario: str, seed: int = 0):
        self.state = ChainState()
        builder = SCENARIOS[scenario]
        started = time.perf_counter()
        self.world = builder(self.state) if scenario == "empty" else builder(self.state, seed=seed)
        self.build_seconds = time.perf_counter() - started
        self._rng = random.Random(seed + 1)
        self._stake_keys = sorted(self.world.stake)
        self._by_subnet: dict[int, list[tuple[str, int]]] = {}
        for hotkey, netuid in self._stake_keys:
            self._by_subnet.setdefault(netuid, []).append((hotkey, netuid))
        self.node = SimNode(self.state).start()

    def info(self) -> dict[str, Any]:
        permits = self.world.permits
        return {"url": self.node.url, "entries": self.world.entries, "edges": self.world.edge_count,
                "permit_holders": sum(sum(permits[n]) for n in permits if n),  # root's are never in scope
                "build_seconds": self.build_seconds}

    def set_latency(self, seconds: float) -> None:
        self.node.latency = seconds

    def reset_counters(self) -> None:
        self.node.reset_counters()

    def counters(self) -> dict[str, Any]:
        node = self.node
        return {
            "requests": sum(node.requests.values()),
            "by_method": dict(node.requests),
            "frames": node.frames,
            "max_in_flight": node.max_in_flight,
        }

    def cpu(self) -> float:
        """This process's CPU so far: what the node spent answering (and advancing)."""
        return time.process_time()

    def advance(self) -> int:
        """Commit a new block with moved stakes; returns its number."""
        rng, stake = self._rng, self.world.stake
        changed = {}
        subnets = [n for n in self._by_subnet if n]
        for netuid in rng.sample(subnets, min(EPOCH_SUBNETS_PER_BLOCK, len(subnets))):
            for key in self._by_subnet[netuid]:
                if stake[key]:
                    changed[key] = stake[key] + rng.randrange(1, 1 + stake[key] // 1000)
        for key in rng.sample(self._stake_keys, min(STAKE_CHANGES_PER_BLOCK, len(self._stake_keys))):
            changed[key] = max(0, stake[key] + rng.randint(-stake[key] // 10, stake[key] // 10 + 10**9))
        stake.update(changed)
        self.state.set_many("TotalHotkeyAlpha", (([h, n], v) for (h, n), v in changed.items()))
        number, _ = self.state.commit_block()
        return number

    def close(self) -> None:
        self.node.stop()
