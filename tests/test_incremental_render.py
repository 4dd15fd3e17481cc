"""Rendering only what changed (``serving.chunks``) against rendering from scratch, on every step.

A seeded random snapshot changes a little at each step (values, validators and
edges coming and going, 0.0 becoming -0.0, an int becoming the equal float, a
subnet's rows split in two runs, aliases needing escapes, the change counters):
the incremental publication must equal a from-scratch one byte for byte (plain),
and its multi-member gzip must decompress to the same bytes.
"""

from __future__ import annotations

import gzip
import random
import zlib
from dataclasses import replace

import pytest

from exporter.config import COLLECTORS
from exporter.serving.chunks import RunInputs, value_key
from exporter.serving.exposition import DETAIL_FAMILIES, VALIDATOR_FAMILIES, render_chunks, render_snapshot
from exporter.serving import publication
from exporter.serving.publication import render
from exporter.snapshot.model import (
    ChainInfo, Edge, Identity, PendingChildren, PendingEffect, Snapshot, SubnetState, ValidatorState, WatchedKey,
)

HOTKEYS = [f"5{c}{i:02d}hotkey" for c in "CDEFGH" for i in range(8)]
NETUIDS = range(1, 7)
U64 = 2**64 - 1


def _value(rng: random.Random):
    """A number as the snapshot may hold it, with the cases whose text differs though they compare equal."""
    return rng.choice([0.0, -0.0, 1, 1.0, 2.5, rng.random() * 1e6, rng.randrange(10**12), float("inf")])


def _validator(rng: random.Random, hotkey: str, netuid: int) -> ValidatorState:
    return ValidatorState(
        hotkey=hotkey, netuid=netuid, uid=rng.choice([None, rng.randrange(256)]), permit=rng.random() < 0.5,
        own_alpha=rng.randrange(10**15), root_tao=rng.choice([0, rng.randrange(10**13)]),
        to_children_alpha=_value(rng), from_parents_alpha=_value(rng), inherited_alpha=rng.randrange(10**15),
        inherited_root_tao=rng.randrange(10**13), stake_weight=_value(rng), childkey_take=_value(rng),
        parents=rng.randrange(3), children=rng.randrange(3), suspended=rng.choice([None, False, True]),
    )


def _snapshot(rng: random.Random) -> Snapshot:
    keys = sorted(rng.sample([(n, h) for n in NETUIDS for h in HOTKEYS], 120))
    validators = tuple(_validator(rng, h, n) for n, h in keys)
    edges = tuple(Edge(rng.choice(HOTKEYS), rng.choice(HOTKEYS), n, rng.randrange(U64), rng.choice([None, _value(rng)]))
                  for n in NETUIDS for _ in range(rng.randrange(6)))
    pending = tuple(PendingChildren(rng.choice(HOTKEYS), n, tuple((rng.randrange(U64), rng.choice(HOTKEYS)) for _ in range(rng.randrange(3))),
                                    rng.randrange(10**6)) for n in NETUIDS if rng.random() < 0.6)
    return Snapshot(
        chain=ChainInfo(block=rng.randrange(10**6), block_hash="0x00", timestamp_seconds=1.7e9, spec_version=393,
                        tao_weight=0.18, stake_threshold=1000, min_take=0.0, max_take=0.18, pending_cooldown=7200),
        validators=validators,
        edges=edges,
        pending=pending,
        identities=tuple(Identity(h, f"cold{h}", rng.choice(["", 'a "quoted"\\alias\n', "ålias"]), rng.random() < 0.2)
                         for h in sorted({v.hotkey for v in validators})),
        subnets=tuple(SubnetState(n, 64, rng.randrange(64), rng.choice([None, _value(rng)]), rng.choice([None, 5.0]),
                                  rng.choice([None, 1000 + n])) for n in NETUIDS),
        expected_takes={h: 0.09 for h in rng.sample(HOTKEYS, 3)},
        projected_permit_changes={(v.hotkey, v.netuid): rng.random() < 0.5 for v in rng.sample(validators, 4)},
        metagraph_differences={n: rng.randrange(3) for n in rng.sample(list(NETUIDS), 2)},
        pending_effects=tuple(PendingEffect(p.parent, c, p.netuid, rng.randrange(U64), q) for p in pending for q, c in p.children),
        watched=tuple(WatchedKey(h, "w", (1,) if rng.random() < 0.7 else ()) for h in HOTKEYS[:3]),
    )


def _step(rng: random.Random, before: Snapshot) -> Snapshot:
    """``before`` with a few things changed, as between two refreshes."""
    validators = list(before.validators)
    for _ in range(rng.randrange(4)):
        i = rng.randrange(len(validators))
        v = validators[i]
        validators[i] = rng.choice([
            replace(v, own_alpha=v.own_alpha + 1),
            replace(v, stake_weight=-0.0 if v.stake_weight == 0 else 0.0),
            replace(v, childkey_take=float(v.childkey_take) if type(v.childkey_take) is int else 1),
            replace(v, permit=not v.permit, uid=None),
            replace(v, children=0, parents=0),
            replace(v, suspended=None),
        ])
    if rng.random() < 0.3:
        del validators[rng.randrange(len(validators))]
    if rng.random() < 0.3:  # a validator that sorts into the middle of another subnet's rows: a split run
        v = validators[rng.randrange(len(validators))]
        validators.insert(rng.randrange(len(validators)), replace(v, netuid=v.netuid % 6 + 1))
    edges = list(before.edges)
    if edges and rng.random() < 0.5:
        i = rng.randrange(len(edges))
        edges[i] = replace(edges[i], proportion=rng.randrange(U64))
    if edges and rng.random() < 0.3:
        del edges[rng.randrange(len(edges))]
    changes = {"validators": tuple(validators), "edges": tuple(edges)}
    if rng.random() < 0.5:
        changes["chain"] = replace(before.chain, block=before.chain.block + 1)
    if rng.random() < 0.2:
        i = rng.randrange(len(before.identities))
        identities = list(before.identities)
        identities[i] = replace(identities[i], alias=identities[i].alias + '"')
        changes["identities"] = tuple(identities)
    if rng.random() < 0.2:
        changes["pending"] = ()
        changes["pending_effects"] = ()
    if rng.random() < 0.2:
        changes["subnets"] = before.subnets[1:]
    return replace(before, **changes)


@pytest.mark.parametrize("seed", range(6))
def test_every_step_equals_a_render_from_scratch(seed, monkeypatch):
    monkeypatch.setattr(publication, "SUBNETS_PER_MEMBER", 1 + seed % 3)  # members of 1-3 subnets' chunks
    rng = random.Random(seed)
    collectors = frozenset(COLLECTORS) if seed % 3 else frozenset(rng.sample(sorted(COLLECTORS), 4))
    snapshot = _snapshot(rng)
    previous = None
    for step in range(40):
        extra = rng.choice([b"", b"# counters\nx 1\n", b"# counters\nx 2\n"])
        incremental = render(snapshot, extra, collectors, previous)
        scratch = render(snapshot, extra, collectors)
        assert incremental.plain == scratch.plain == render_snapshot(snapshot, extra, collectors), f"step {step}"
        tail = b"# status\nup 1\n"
        body = gzip.decompress(incremental.gzip_head + incremental.gzip_tail(tail))
        assert body == scratch.plain + tail, f"step {step}"
        previous = incremental
        snapshot = _step(rng, snapshot)


def test_an_unchanged_snapshot_renders_and_compresses_nothing_again():
    snapshot = _snapshot(random.Random(7))
    first = render(snapshot, b"x 1\n")
    again = render(replace(snapshot), b"x 1\n", previous=first)
    assert again.rendering.rendered == 0
    assert all(a[2] is b[2] for a, b in zip(again.members, first.members)), "every gzip member reused"
    assert again.plain == first.plain and again.gzip_head == first.gzip_head


def test_one_changed_validator_renders_only_its_subnets_chunks_again():
    rng = random.Random(8)
    snapshot = _snapshot(rng)
    first = render_chunks(snapshot)
    v = snapshot.validators[0]
    changed = replace(snapshot, validators=(replace(v, own_alpha=v.own_alpha + 1), *snapshot.validators[1:]))
    second = render_chunks(changed, previous=first)
    redone = [key for key, text in zip(second.keys, second.texts) if text not in first.texts]
    assert redone == [("bittensor_validator_own_stake_alpha", v.netuid, 0)]
    # Rendered again: the subnet's chunk of each family drawn from the validators, nothing else.
    drawn = {name for name, *_ in VALIDATOR_FAMILIES + DETAIL_FAMILIES} | {
        "bittensor_validator_permit", "bittensor_validator_childkey_suspended"}
    assert second.rendered == len([k for k in second.keys if k[0] in drawn and k[1:] == (v.netuid, 0)])
    assert second.text() == render_snapshot(changed)


@pytest.mark.parametrize("a, b", [([0.0], [-0.0]), ([1], [1.0]), ([1], [True]), ([1.0], [True]), ([2**53], [2.0**53])])
def test_values_that_compare_equal_but_render_differently_have_different_keys(a, b):
    assert a == b
    assert value_key(a) != value_key(b)


def test_the_gzip_body_is_one_stream_of_members_that_zlib_reads_whole():
    snapshot = _snapshot(random.Random(9))
    data = render(snapshot, b"x 1\n")
    body = data.gzip_head + data.gzip_tail(b"# live\n")
    assert len([m for _, _, m in data.members if m]) > 10
    # Each member decompressed in turn, as Go's multistream reader does, gives the whole text.
    out, rest = b"", body
    while rest:
        d = zlib.decompressobj(31)
        out += d.decompress(rest)
        rest = d.unused_data
    assert out == data.plain + b"# live\n"


def test_runs_of_the_same_records_are_reused_unserialized_and_equal_copies_by_their_values():
    snapshot = _snapshot(random.Random(8))
    first = render(snapshot, b"")
    again = render(replace(snapshot), b"", previous=first)
    assert again.rendering.rendered == 0
    runs = [i for i in again.rendering.inputs if isinstance(i, RunInputs)]
    assert runs and all(i._serialized is None for i in runs), "the very same records: compared by identity, nothing serialized"
    copies = replace(snapshot, validators=tuple(replace(v) for v in snapshot.validators),
                     edges=tuple(replace(e) for e in snapshot.edges))
    assert render(copies, b"", previous=first).rendering.rendered == 0, "equal copies: equal by their values"
    flipped = replace(snapshot, validators=tuple(replace(v, stake_weight=-0.0) if v.stake_weight == 0.0 else v
                                                 for v in snapshot.validators))
    assert render(flipped, b"", previous=first).plain == render_snapshot(flipped, b"")
