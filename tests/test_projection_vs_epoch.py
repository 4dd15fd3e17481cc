"""The exporter's projection of the next epoch against the epoch the simulated node then runs.

A mainnet-scale chain (128 subnets x 256 uids; the simulated node runs epochs by
the chain's rule, written independently in ``simnode/epoch.py``), read over the
real codec; then the node advances block by block across every subnet's next
epoch, pending child sets included (due ones are applied after their epoch, as
the block step does). Every subnet's projected permit set must be the one the
epoch hands out.
"""

from __future__ import annotations

import asyncio

from exporter.chain.reader import ChainReader
from exporter.config import ScopeConfig
from exporter.snapshot.builder import build_snapshot
from simnode import ChainState
from simnode.epoch import advance_to
from simnode.scenarios import mainnet_scale
from tests.test_storage_reader import FakeConnection

TEMPO = 12  # every subnet's epoch within 13 blocks, each exactly once


def test_the_projected_permits_are_the_ones_the_next_epoch_hands_out_on_every_subnet():
    state = ChainState()
    world = mainnet_scale(state)
    netuids = [n for n in world.hotkeys if n]
    for n in netuids:
        state.set("Tempo", [n], TEMPO)
    # Every pending set due before the coming epochs: the block step applies it after
    # its subnet's epoch, so it must not count in the projection.
    for (n, parent), (children, _) in world.pending.items():
        state.set("PendingChildKeys", [n, parent], (children, 0))
    # A subnet whose owner hotkey holds no stake: it keeps a permit by the owner rule.
    state.set("SubnetOwnerHotkey", [netuids[0]], world.hotkeys[netuids[0]][-1])
    state.commit_block()

    read = asyncio.run(ChainReader(max_in_flight=8).read(FakeConnection(state), ScopeConfig()))
    snapshot = build_snapshot(read, ScopeConfig())
    epochs = {s.netuid: s.next_epoch_block for s in snapshot.subnets}
    assert sorted(epochs) == netuids and all(read.block < e <= read.block + TEMPO + 1 for e in epochs.values())
    current = {n: tuple(read.permits[n]) for n in netuids}

    ran = advance_to(state, max(epochs.values()))
    assert sorted(n for due in ran.values() for n in due) == netuids, "each subnet's epoch ran once"
    assert {n: b for b, due in ran.items() for n in due} == epochs, "at the projected block"

    handed_out = {n: tuple(state.get("ValidatorPermit", [n])) for n in netuids}
    wrong = [n for n in netuids if handed_out[n] != snapshot.projected_permits[n]]
    assert not wrong, f"{len(wrong)} of {len(netuids)} subnets projected wrong, e.g. {wrong[:3]}"
    changed = sum(a != b for n in netuids for a, b in zip(current[n], handed_out[n]))
    print(f"{len(netuids)} subnets projected exactly; the epochs changed {changed} permits")
    assert changed > 0, "the epochs changed permits, so the projection was not just the last epoch's"
    owner_uid = len(world.hotkeys[netuids[0]]) - 1
    assert handed_out[netuids[0]][owner_uid], "the owner's uid holds a permit"
