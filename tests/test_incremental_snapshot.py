"""The snapshot built with the stake memo carried across refreshes equals one built from scratch.

Over a sequence of changing reads (stakes moved, a child set changed, a take changed, TaoWeight
changed, a validator deregistered, a root stake changed, ...), each build with the memo of the
previous builds is compared with a build without one: the whole Snapshot, and its exposition
bytes. Where a step changes one input, what depends on it is computed again and the rest is reused.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace

import pytest

from exporter.config import ScopeConfig, WatchedHotkey
from exporter.serving.exposition import render_snapshot
from exporter.snapshot.builder import build_snapshot
from exporter.snapshot.memo import StakeMemo
from exporter.snapshot.model import ChainRead, frozen
from tests import tricky_chain as t
from tests.test_snapshot import SCOPE, chain_read

WATCHED = ScopeConfig(mode="watched", watch=(WatchedHotkey(t.M, "m"), WatchedHotkey(t.C1, "c1", expected_take=0.1)))


def _with_stake(read: ChainRead, **moves) -> ChainRead:
    stake = dict(read.stake)
    for (hotkey, netuid), value in moves.values():
        stake[(hotkey, netuid)] = value
    return replace(read, stake=stake)


def _links(read: ChainRead, parent: str, netuid: int, links: tuple) -> ChainRead:
    """``read`` with ChildKeys[parent, netuid] = links and ParentKeys mirrored."""
    children = {k: v for k, v in read.children.items() if k != (parent, netuid)}
    if links:
        children[(parent, netuid)] = links
    parents: dict = {}
    for (p, n), kids in children.items():
        for proportion, child in kids:
            parents.setdefault((child, n), []).append((proportion, p))
    return replace(read, children=children, parents={k: tuple(v) for k, v in parents.items()})


def _sequence() -> list[tuple[str, ChainRead, object]]:
    """(step, read, the tracked (hotkey, netuid) whose stake results must be computed again: a set,
    a predicate, or None for all)."""
    # Netuid 2 keeps one permit, so its one contender without links (with root, weighed through
    # TaoWeight) is the top contender, exported.
    base = chain_read(watched_uids={(1, t.M): 6, (1, t.C1): 1}, tempos={1: 360, 2: 360},
                      max_validators={0: 64, 1: 64, 2: 1})
    base = _with_stake(base, a=((t.OWNER, 2), 2000 * t.RAO), b=((t.OWNER, 0), 500 * t.RAO))
    steps = [("base", base, None)]

    def step(name, read, moved):
        steps.append((name, read, moved))
        return read

    read = step("identical", base, set())
    # The projection's ranking inputs besides the weights: no validator's numbers depend on them.
    read = step("a subnet owner appeared", replace(read, owners={2: t.OWNER, 1: t.UIDS_1[3]}), set())
    read = step("StakeThreshold changed", replace(read, stake_threshold=read.stake_threshold * 3), set())
    read = step("MaxAllowedValidators changed", replace(read, max_validators={**read.max_validators, 1: 5}), set())
    read = step("a subnet grew", replace(read, subnet_sizes={1: 12}), set())
    read = step("a child's alpha moved", _with_stake(read, a=((t.C1, 1), 11 * t.RAO)), {(t.C1, 1)})
    # A parent's own alpha is an input of every child's inheritance.
    read = step("a parent's alpha moved", _with_stake(read, a=((t.P, 1), 900 * t.RAO)),
                {(t.P, 1), *((c, 1) for c in t.CHILDREN)})
    read = step("a contender's root moved", _with_stake(read, a=((t.OWNER, 0), 60 * t.RAO)), set())
    read = step("a root stake moved", _with_stake(read, a=((t.P3, 0), 150 * t.RAO)), {(t.P3, 1), (t.M, 1)})
    read = step("a parent's child set changed", _links(read, t.P2, 1, ((t.QUARTER, t.M), (t.QUARTER, t.Z))),
                {(t.P2, 1), (t.M, 1), (t.Z, 1)})
    read = step("a take changed", replace(read, takes={**read.takes, (t.C3, 1): 7000}), {(t.C3, 1)})
    read = step("TaoWeight changed", replace(read, tao_weight=t.TAO_WEIGHT // 2), None)
    read = step("the minimum take changed", replace(read, min_take=4000), None)
    read = step("a subnet minimum take appeared", replace(read, min_take_per_subnet={1: 6000}),
                lambda key: key[1] == 1)
    read = step("a runtime with suspensions", replace(read, suspended={}), None)  # None -> False for all
    read = step("a suspension", replace(read, suspended={(t.M, 1): True}), {(t.M, 1)})
    # M (uid 6) watched stays tracked without its permit (its state's permit an input alone); where
    # it is tracked only as the child of watched P it stays without its uid (so computed again).
    permits_1 = read.permits[1]
    read = step("a watched validator's permit lost",
                replace(read, permits={**read.permits, 1: permits_1[:6] + (False,) + permits_1[7:]}), {(t.M, 1)})
    read = step("its permit back", replace(read, permits={**read.permits, 1: permits_1}), {(t.M, 1)})
    read = step("a permit lost", replace(read, permits={**read.permits, 1: (True,) * 9 + (False, False)}), {(t.Z, 1)})
    hotkeys = {k: v for k, v in read.hotkeys.items() if k != (1, 9)}
    read = step("a validator deregistered", replace(read, hotkeys=hotkeys, permits={**read.permits, 1: (True,) * 9}),
                {(t.Z, 1)})
    read = step("its child link dropped", _links(read, t.NP, 1, ()), {(t.NP, 1), (t.Z, 1)})
    step("back to the start", base, None)
    return steps


@pytest.mark.parametrize("scope", [SCOPE, WATCHED], ids=["network", "watched"])
def test_the_memo_changes_nothing_on_any_step(scope):
    memo = StakeMemo()
    for name, read, _ in _sequence():
        carried = build_snapshot(read, scope, memo)
        fresh = build_snapshot(read, scope)
        assert carried == fresh, name
        assert render_snapshot(carried) == render_snapshot(fresh), name


def test_each_change_recomputes_exactly_what_depends_on_it():
    memo = StakeMemo()
    before: dict = {}
    for name, read, moved in _sequence():
        build_snapshot(read, SCOPE, memo)
        after = memo.states()
        reused = {key for key, entry in after.items() if before.get(key) is entry}
        if moved is None:  # an input of every result, or the first build
            assert not reused or name == "back to the start", name
        else:
            expected = {key for key in after if (moved(key) if callable(moved) else key in moved)}
            assert set(after) - reused == expected, name
        before = after


def test_the_memo_keeps_one_builds_worth():
    memo = StakeMemo()
    read = chain_read()
    build_snapshot(read, SCOPE, memo)
    size = len(memo)
    hotkeys = {k: v for k, v in read.hotkeys.items() if k != (1, 9)}
    for _ in range(3):
        build_snapshot(_with_stake(read, a=((t.P, 1), 1)), SCOPE, memo)
        build_snapshot(read, SCOPE, memo)
    assert len(memo) == size
    deregistered = replace(read, hotkeys=hotkeys, permits={**read.permits, 1: (True,) * 9})
    build_snapshot(deregistered, SCOPE, memo)
    fresh = StakeMemo()
    build_snapshot(deregistered, SCOPE, fresh)
    assert len(memo) == len(fresh) < size  # what that build used, nothing more


def test_a_mainnet_shaped_sequence_with_the_memo_equals_from_scratch():
    """A quarter of the mainnet scenario (32 subnets of 256 uids), to stay a few seconds;
    the full scale is compared the same way by the timing in BENCHMARKS.md."""
    from exporter.chain.reader import ChainReader
    from simnode import ChainState
    from simnode.scenarios import mainnet_scale
    from tests.test_storage_reader import FakeConnection

    state = ChainState()
    mainnet_scale(state, netuids=33, edges=800, takes=800, pool=80, pending=10)
    scope = ScopeConfig()
    read = asyncio.run(ChainReader(max_in_flight=8).read(FakeConnection(state), scope))
    rng = random.Random(15)
    keys = sorted(read.stake)

    def moved(read, keys):
        stake = dict(read.stake)
        for key in keys:
            stake[key] += rng.randint(1, 10**9)
        return replace(read, stake=frozen(stake))

    parent, netuid = next(iter(sorted(read.children)))
    sequence = [
        read,
        moved(read, rng.sample(keys, 50)),
        moved(read, keys),
        _links(read, parent, netuid, read.children[(parent, netuid)][1:]),
        replace(read, tao_weight=read.tao_weight // 2),
    ]
    memo = StakeMemo()
    for number, step in enumerate(sequence):
        carried = build_snapshot(step, scope, memo)
        assert carried == build_snapshot(step, scope), number


def test_a_subnet_ranking_is_reused_exactly_when_its_inputs_are_equal():
    """Each input of the ranking (the weights by uid, StakeThreshold, the owner's uid,
    MaxAllowedValidators) changed alone: only that subnet's ranking is made again."""
    base = chain_read(max_validators={0: 64, 1: 64, 2: 1}, owners={1: t.UIDS_1[3], 2: t.OWNER})
    changes = [
        (_with_stake(base, a=((t.OWNER, 2), 1)), {2}),  # a contender's weight
        (_with_stake(base, a=((t.C1, 1), 11 * t.RAO)), {1}),  # a tracked validator's weight
        (replace(base, stake_threshold=base.stake_threshold + 1), {1, 2}),
        (replace(base, owners={1: t.UIDS_1[4], 2: t.OWNER}), {1}),
        (replace(base, max_validators={0: 64, 1: 64, 2: 2}), {2}),
        (replace(base, subnet_sizes={1: 12}), {1}),  # one more uid, weighing 0
    ]
    # The next epoch block is not a ranking input; after each change, back to the base.
    steps = [(base, {1, 2}), (replace(base, block=base.block + 1), set())]
    steps += [step for change in changes for step in (change, (base, change[1]))]
    memo = StakeMemo()
    before: dict = {}
    for number, (read, moved) in enumerate(steps):
        carried = build_snapshot(read, SCOPE, memo)
        assert carried == build_snapshot(read, SCOPE), number
        after = memo.rankings()
        assert {n for n, r in after.items() if before.get(n) is not r} == moved, number
        before = after


def _random_step(read: ChainRead, rng: random.Random) -> ChainRead:
    """One to three random moves of the kinds a memo's reuse must notice (``ReadChanges``)."""
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(["alpha", "root", "parent", "drop", "links", "take", "hotkey", "permit", "suspend",
                           "subnet_take", "threshold", "watched_uid", "nothing"])
        stake = dict(read.stake)
        if kind in ("alpha", "root", "parent", "drop"):
            if kind == "parent":  # a parent's stake on a subnet where it has children
                parent, netuid = rng.choice(sorted(read.children))
                key = (parent, rng.choice([netuid, 0]))
            else:
                key = rng.choice(sorted(k for k in stake if (k[1] == 0) == (kind == "root")))
            if kind == "drop":
                del stake[key]
            else:
                stake[key] = stake.get(key, 0) + rng.randint(1, 10**12)
            read = replace(read, stake=frozen(stake))
        elif kind == "links":
            parent, netuid = rng.choice(sorted(read.children))
            read = _links(read, parent, netuid, read.children[(parent, netuid)][1:])
        elif kind == "take":
            key = rng.choice(sorted(read.stake))
            read = replace(read, takes=frozen({**read.takes, key: rng.randint(0, 11796)}))
        elif kind == "hotkey":  # a uid deregistered and taken by a hotkey that holds stake elsewhere
            position = rng.choice(sorted(k for k in read.hotkeys if k[0] != 0))
            hotkey = rng.choice(sorted({h for h, _ in read.stake}))
            read = replace(read, hotkeys=frozen({**read.hotkeys, position: hotkey}))
        elif kind == "permit":
            netuid = rng.choice(sorted(n for n in read.permits if n))
            permits = list(read.permits[netuid])
            uid = rng.randrange(len(permits))
            permits[uid] = not permits[uid]
            read = replace(read, permits=frozen({**read.permits, netuid: tuple(permits)}))
        elif kind == "suspend":
            key = rng.choice(sorted(read.stake))
            read = replace(read, suspended=frozen({**(read.suspended or {}), key: rng.random() < 0.5}))
        elif kind == "subnet_take":
            netuid = rng.choice([n for n in read.netuids if n])
            read = replace(read, min_take_per_subnet=frozen({**(read.min_take_per_subnet or {}),
                                                             netuid: rng.randint(0, 11796)}))
        elif kind == "watched_uid":  # a uid said to be a hotkey's that the uid map gives another
            watched_uids = dict(read.watched_uids)
            if watched_uids and rng.random() < 0.4:
                del watched_uids[rng.choice(sorted(watched_uids))]
            else:
                netuid, uid = rng.choice(sorted(k for k in read.hotkeys if k[0] != 0))
                watched_uids[(netuid, rng.choice(sorted({h for h, _ in read.stake})))] = uid
            read = replace(read, watched_uids=frozen(watched_uids))
        elif kind == "threshold":
            read = replace(read, stake_threshold=rng.choice([0, read.stake_threshold, read.stake_threshold * 10]))
    return replace(read, block=read.block + 1)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_moves_with_the_memo_equal_from_scratch(seed):
    """Many steps of random moves on a small mainnet-shaped chain: each build with the memo equals
    one without it, so a result reused though one of its inputs moved cannot go unseen."""
    from exporter.chain.reader import ChainReader
    from simnode import ChainState
    from simnode.scenarios import mainnet_scale
    from tests.test_storage_reader import FakeConnection

    state = ChainState()
    mainnet_scale(state, netuids=7, uids=48, permits=12, edges=120, takes=60, pool=24, pending=4, seed=seed)
    scope = ScopeConfig()
    read = asyncio.run(ChainReader(max_in_flight=8).read(FakeConnection(state), scope))
    rng = random.Random(seed)
    # Watched hotkeys stay tracked when their permit flips (a permit holder alone would leave).
    watched = ScopeConfig(watch=tuple(WatchedHotkey(h, f"w{i}") for i, h in enumerate(
        rng.sample(sorted({h for (n, _), h in read.hotkeys.items() if n}), 6))))
    memos = {scope: StakeMemo(), watched: StakeMemo()}
    for step in range(40):
        for each, memo in memos.items():
            carried = build_snapshot(read, each, memo)
            assert carried == build_snapshot(read, each), step
        read = _random_step(read, rng)


def test_a_hotkey_at_two_uids_of_a_subnet_is_weighed_again_at_both():
    """The reuse of a subnet's contenders finds the uid of a hotkey whose stake moved: with the
    hotkey at two uids (not on the chain, but in a read) both must move."""
    base = chain_read(max_validators={0: 64, 1: 64, 2: 1})
    contenders = [uid for uid, permitted in enumerate(base.permits[2]) if not permitted]
    hotkey = base.hotkeys[(2, contenders[0])]
    twice = replace(base, hotkeys={**base.hotkeys, (2, 2): hotkey},
                    permits={**base.permits, 2: base.permits[2] + (False,)})
    memo = StakeMemo()
    for number, read in enumerate([twice, replace(twice, block=101), _with_stake(twice, a=((hotkey, 2), 10**6 * t.RAO))]):
        carried = build_snapshot(read, SCOPE, memo)
        assert carried == build_snapshot(read, SCOPE), number


def test_a_watched_hotkey_tracked_through_a_new_link_alone_is_not_missed():
    """The tracked candidates are reused only while everything they are made of is equal, the
    links of watched hotkeys included: a watched hotkey given a child on a subnet where it holds
    no uid becomes tracked there."""
    base = chain_read(watched_uids={(1, t.M): 6, (1, t.C1): 1}, tempos={1: 360, 2: 360},
                      max_validators={0: 64, 1: 64, 2: 1})
    memo = StakeMemo()
    before = build_snapshot(base, WATCHED, memo)
    assert not any((v.hotkey, v.netuid) == (t.C1, 2) for v in before.tracked)
    linked = _links(base, t.C1, 2, ((t.HALF, t.OWNER),))
    carried, fresh = build_snapshot(linked, WATCHED, memo), build_snapshot(linked, WATCHED)
    assert carried == fresh
    assert any((v.hotkey, v.netuid) == (t.C1, 2) for v in carried.tracked)
