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
import random

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


def test_the_epoch_after_next_counts_the_pending_sets_due_before_the_next_one_on_every_subnet():
    """Many pending sets with cooldowns spread over the next two epochs: those due before the next
    epoch E1 are applied right after it and count at E2; the others do not yet. The exporter's E2
    permits (the after-pending projection where sets are due, else the next epoch's) must be the
    ones the simulated epoch E2 hands out."""
    state = ChainState()
    world = mainnet_scale(state, pending=800, seed=3)
    netuids = [n for n in world.hotkeys if n]
    for n in netuids:
        state.set("Tempo", [n], TEMPO)
    head = state.head.number
    rng = random.Random(13)
    for (n, parent), (children, _) in world.pending.items():
        state.set("PendingChildKeys", [n, parent], (children, head + rng.randint(0, 2 * (TEMPO + 1))))
    # Children that would make their own parent their child: the chain refuses such a set when it
    # applies, unless the parent's set, applied before it in storage-key order, dropped that child.
    for (parent, n), links in sorted(world.child_keys.items())[::40]:
        state.set("PendingChildKeys", [n, links[0][1]], ([(2**63, parent)], head))
        if rng.random() < 0.5:
            state.set("PendingChildKeys", [n, parent], ([], head))
    state.commit_block()

    read = asyncio.run(ChainReader(max_in_flight=8).read(FakeConnection(state), ScopeConfig()))
    snapshot = build_snapshot(read, ScopeConfig())
    first = {s.netuid: s.next_epoch_block for s in snapshot.subnets}
    second = {n: first[n] + TEMPO + 1 for n in netuids}
    after = snapshot.after_pending
    assert all(a.apply_block == first[n] and a.epoch_block == second[n] for n, a in after.items())
    expected = {n: after[n].permits if n in after else snapshot.projected_permits[n] for n in netuids}

    ran = advance_to(state, max(second.values()))
    epochs = {}
    for block, due in ran.items():
        for n in due:
            epochs.setdefault(n, []).append(block)
    assert epochs == {n: [first[n], second[n]] for n in netuids}, "each subnet's E1 and E2 ran, nothing more"

    handed_out = {n: tuple(state.get("ValidatorPermit", [n])) for n in netuids}
    wrong = [n for n in netuids if handed_out[n] != expected[n]]
    assert not wrong, f"{len(wrong)} of {len(netuids)} subnets' E2 projected wrong, e.g. {wrong[:3]}"
    due = sum(1 for (n, _), (_, cooldown) in read.pending.items() if cooldown < first[n])
    applied = sum(a.applied for a in after.values())
    moved = sum(len(a.changes) for a in after.values())
    print(f"E2 projected exactly on {len(netuids)} subnets; {len(after)} with pending sets due before E1 "
          f"({due} sets due, {applied} applied, {due - applied} refused by the chain's checks), "
          f"which change {moved} permits against the next epoch's projection")
    assert len(after) > 50 and moved > 0 and applied > 100 and due > applied, "some sets refused"
    assert not any(state.get("PendingChildKeys", [n, p]) for (n, p), (_, cd) in read.pending.items() if cd < first[n])
