"""Render a snapshot into Prometheus text exposition bytes, once per refresh.

Scrapes only send these bytes, so rendering is plain string building over the
snapshot's tuples; a series exists exactly when its key is in the snapshot,
so a key that leaves the chain leaves ``/metrics`` with the next refresh.
The text is made of chunks (``chunks``: a family's header, a family's series
on one subnet), and given the previous refresh's rendering only the chunks
whose inputs changed are rendered again.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any, Callable, Hashable, Iterable, Optional, Sequence

from exporter.config import COLLECTORS
from exporter.serving.activity_exposition import render_activity
from exporter.serving.chunks import ChunkWriter, Rendering, Runs, _number, lines
from exporter.serving.metric_defs import metric
from exporter.snapshot.model import Edge, Identity, Snapshot, ValidatorState
from exporter.snapshot.units import to_units, u64_ratio



def escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


# (name, value of a validator); labels are always hotkey and netuid. Every
# validator in scope has each of these (collector "validator").
VALIDATOR_FAMILIES: tuple[tuple[str, Callable[[ValidatorState], float]], ...] = (
    ("bittensor_validator_own_stake_alpha", lambda v: to_units(v.own_alpha)),
    ("bittensor_validator_inherited_stake_alpha", lambda v: to_units(v.inherited_alpha)),
    ("bittensor_validator_stake_weight_alpha", lambda v: to_units(v.stake_weight)),
    ("bittensor_validator_childkey_take_ratio", lambda v: v.childkey_take),
    ("bittensor_validator_stored_childkey_take_ratio", lambda v: v.stored_childkey_take),
)
# Collector "stake_detail": a series exists only where the relationship does
# (a validator without children gives nothing to children), which keeps a
# network-wide scrape to the validators that have childkeys.
DETAIL_FAMILIES: tuple[tuple[str, Callable[[ValidatorState], bool], Callable[[ValidatorState], float]], ...] = (
    ("bittensor_validator_stake_to_children_alpha", lambda v: v.children > 0, lambda v: to_units(v.to_children_alpha)),
    ("bittensor_validator_stake_from_parents_alpha", lambda v: v.parents > 0, lambda v: to_units(v.from_parents_alpha)),
    ("bittensor_validator_inherited_root_stake_tao", lambda v: v.parents > 0 or v.children > 0,
     lambda v: to_units(v.inherited_root_tao)),
)
EVERYTHING = frozenset(COLLECTORS)


def _hotkey_group(hotkey: str) -> str:
    """A chunk of the families sorted by hotkey: the hotkeys sharing their first three characters."""
    return hotkey[:3]


class _Writer:
    """The exposition as chunks (a mainnet refresh has ~100,000 lines), encoded chunk by chunk."""

    def __init__(self, previous: Optional[Rendering]) -> None:
        self.chunks = ChunkWriter(previous)

    def _header(self, name: str) -> None:
        """The family's HELP and TYPE lines, from its row in ``metric_defs`` (the one place they are written)."""
        m = metric(name)
        self.chunks.chunk((name,), (m.help_text, m.type), _header_text, name, m.help_text, m.type)

    def columns(self, name: str, labels: Sequence[str], values: Sequence[float],
                groups: Optional[Sequence[Hashable]] = None) -> None:
        """A family from parallel columns: each series' labels (without braces) and its value,
        a chunk per run of equal ``groups`` (the subnet, mostly)."""
        self._header(name)
        if labels:
            self.chunks.series(name, labels, values, groups)

    def family(self, name: str, samples: Iterable[tuple], grouped: bool = False) -> None:
        """A family from (labels, value) samples; ``grouped``: (group, labels, value) samples."""
        if grouped:
            groups, labels, values = tuple(zip(*samples)) or ((), (), ())
            self.columns(name, labels, values, groups)
        else:
            self.columns(name, *(tuple(zip(*samples)) or ((), ())))

    def records(self, name: str, runs: Runs, render: Callable[[str, Sequence], bytes]) -> None:
        """A family drawn from ``runs``' records, ``render(name, records)`` run by run (see ``chunks.Runs``)."""
        self._header(name)
        self.chunks.records(name, runs, render)

    def single(self, name: str, value: float) -> None:
        """A family of one series without labels."""
        self._header(name)
        text = f"{name} {_number(value)}\n"
        self.chunks.chunk((name, None, 0), text, str.encode, text)


def _labels(v: ValidatorState) -> str:
    return f'hotkey="{v.hotkey}",netuid="{v.netuid}"'


def _column(value_of: Callable[[ValidatorState], float]) -> Callable[[str, Sequence[ValidatorState]], bytes]:
    """The rows of a family with a series for every validator."""
    return lambda name, vs: lines(name, [_labels(v) for v in vs], [value_of(v) for v in vs])


def _sparse(present: Callable[[ValidatorState], bool], value_of: Callable[[ValidatorState], float]) -> Callable[[str, Sequence[ValidatorState]], bytes]:
    """The rows of a family with a series only where ``present``."""
    return lambda name, vs: _column(value_of)(name, [v for v in vs if present(v)])


def _permit_rows(name: str, vs: Sequence[ValidatorState]) -> bytes:
    return lines(name, [f'{_labels(v)},uid="{"" if v.uid is None else v.uid}"' for v in vs], [int(v.permit) for v in vs])


def _edge_rows(value_of: Callable[[Edge], Optional[float]]) -> Callable[[str, Sequence[Edge]], bytes]:
    """The rows of an edge family: a series for every edge whose value is not None."""
    def render(name: str, edges: Sequence[Edge]) -> bytes:
        valued = [(e, x) for e in edges if (x := value_of(e)) is not None]
        return lines(name, [f'parent_hotkey="{e.parent}",child_hotkey="{e.child}",netuid="{e.netuid}"' for e, _ in valued],
                     [x for _, x in valued])
    return render


def _info_rows(name: str, identities: Sequence[Identity]) -> bytes:
    return lines(name, [f'hotkey="{i.hotkey}",coldkey="{escape_label(i.coldkey)}",alias="{escape_label(i.alias)}",watched="{str(i.watched).lower()}"'
                        for i in identities], [1] * len(identities))


def _header_text(name: str, help_text: str, kind: str) -> bytes:
    return f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n".encode()


def render_snapshot(snapshot: Snapshot, extra: bytes = b"", collectors: frozenset = EVERYTHING) -> bytes:
    """The snapshot's exposition (the families of ``collectors``), then ``extra`` (appended as is)."""
    return render_chunks(snapshot, extra, collectors).text()


def render_chunks(snapshot: Snapshot, extra: bytes = b"", collectors: frozenset = EVERYTHING,
                  previous: Optional[Rendering] = None) -> Rendering:
    """``render_snapshot`` as chunks, each unchanged one taken from ``previous`` (the last refresh's)."""
    w = _Writer(previous)
    by_subnet = Runs(snapshot.validators, attrgetter("netuid"))
    if "validator" in collectors:
        _validators(w, snapshot, by_subnet)
    if "stake_detail" in collectors:
        _stake_detail(w, snapshot, by_subnet)
    if "relationships" in collectors:
        _relationships(w, snapshot)
    if "subnet" in collectors:
        _subnets(w, snapshot)
    if "watched" in collectors:
        w.family(
            "bittensor_watched_hotkey_found",
            ((f'hotkey="{k.hotkey}",alias="{escape_label(k.alias)}"', int(k.found)) for k in snapshot.watched),
        )
    if "chain" in collectors:
        _chain(w, snapshot)
    render_activity(w, snapshot, collectors)
    w.chunks.chunk(("extra",), extra, bytes, extra)
    return w.chunks.finish()


def _sparse_samples(validators: Sequence[ValidatorState], values: dict, sample: Callable[[str, Any], tuple]) -> Iterable[tuple]:
    """``sample(labels, value)`` of each validator (in exposition order) that ``values``, keyed
    by (hotkey, netuid), holds; no walk over the validators when it holds none (the usual)."""
    if not values:
        return ()
    return (sample(_labels(v), value) for v in validators if (value := values.get((v.hotkey, v.netuid))) is not None)


def _validators(w: _Writer, snapshot: Snapshot, by_subnet: Runs) -> None:
    validators = snapshot.validators
    for name, value_of in VALIDATOR_FAMILIES:
        w.records(name, by_subnet, _column(value_of))
    # The uid rides on the permit series as a label (it changes only when the
    # hotkey re-registers): one series per validator instead of two.
    w.records("bittensor_validator_permit", by_subnet, _permit_rows)
    if any(v.suspended is not None for v in validators):
        w.records(
            "bittensor_validator_childkey_suspended",
            by_subnet, _sparse(lambda v: v.suspended is not None, lambda v: int(bool(v.suspended))),
        )
    w.family(
        "bittensor_validator_projected_permit",
        _sparse_samples(validators, snapshot.projected_permit_changes, lambda lab, permit: (lab, int(permit))),
    )
    after = snapshot.permit_changes_after_pending
    w.family(
        "bittensor_validator_projected_permit_after_pending",
        _sparse_samples(validators, after, lambda lab, c: (f'{lab},parent_hotkey="{c.parent}",reason="{c.reason}"', int(c.permit))),
    )
    w.family(
        "bittensor_validator_expected_childkey_take_ratio",
        ((_labels(v), snapshot.expected_takes[v.hotkey]) for v in validators if v.hotkey in snapshot.expected_takes)
        if snapshot.expected_takes else (),
    )
    w.records(
        "bittensor_validator_info",
        Runs(snapshot.identities, lambda i: _hotkey_group(i.hotkey)), _info_rows,
    )


def _stake_detail(w: _Writer, snapshot: Snapshot, by_subnet: Runs) -> None:
    validators = snapshot.validators
    for name, present, value_of in DETAIL_FAMILIES:
        w.records(name, by_subnet, _sparse(present, value_of))
    # Root stake belongs to the hotkey, not to a (hotkey, subnet): once per hotkey.
    root: dict[str, int] = {}
    for v in validators:
        if v.root_tao:
            root.setdefault(v.hotkey, v.root_tao)
    w.family(
        "bittensor_hotkey_root_stake_tao",
        ((_hotkey_group(h), f'hotkey="{h}"', to_units(t)) for h, t in sorted(root.items())),
        grouped=True,
    )


def _relationships(w: _Writer, snapshot: Snapshot) -> None:
    edges = Runs(snapshot.edges, attrgetter("netuid"))
    w.records(
        "bittensor_childkey_proportion_ratio",
        edges, _edge_rows(lambda e: None if e.proportion is None else u64_ratio(e.proportion)),
    )
    w.records(
        "bittensor_childkey_inherited_alpha",
        edges, _edge_rows(lambda e: None if e.inherited_alpha is None else to_units(e.inherited_alpha)),
    )
    w.family(
        "bittensor_childkey_pending_children",
        ((p.netuid, f'parent_hotkey="{p.parent}",netuid="{p.netuid}"', len(p.children)) for p in snapshot.pending),
        grouped=True,
    )
    w.family(
        "bittensor_childkey_pending_cooldown_block",
        ((p.netuid, f'parent_hotkey="{p.parent}",netuid="{p.netuid}"', p.cooldown_block) for p in snapshot.pending),
        grouped=True,
    )
    w.family(
        "bittensor_childkey_pending_proportion_ratio",
        ((p.netuid, f'parent_hotkey="{p.parent}",child_hotkey="{child}",netuid="{p.netuid}"', u64_ratio(q)) for p in snapshot.pending for q, child in p.children),
        grouped=True,
    )
    w.family(
        "bittensor_childkey_pending_proportion_change_ratio",
        ((e.netuid, f'parent_hotkey="{e.parent}",child_hotkey="{e.child}",netuid="{e.netuid}"', u64_ratio(e.pending) - u64_ratio(e.current))
         for e in snapshot.pending_effects),
        grouped=True,
    )


def _subnets(w: _Writer, snapshot: Snapshot) -> None:
    subnets = snapshot.subnets
    w.family(
        "bittensor_subnet_max_validators",
        ((f'netuid="{n.netuid}"', n.max_validators) for n in subnets),
    )
    w.family(
        "bittensor_subnet_validator_permits",
        ((f'netuid="{n.netuid}"', n.permits) for n in subnets),
    )
    w.family(
        "bittensor_subnet_permit_cutoff_stake_weight_alpha",
        ((f'netuid="{n.netuid}"', to_units(n.permit_cutoff_stake_weight)) for n in subnets if n.permit_cutoff_stake_weight is not None),
    )
    w.family(
        "bittensor_subnet_top_contender_stake_weight_alpha",
        ((f'netuid="{n.netuid}"', to_units(n.top_contender_stake_weight)) for n in subnets if n.top_contender_stake_weight is not None),
    )
    w.family(
        "bittensor_subnet_metagraph_difference_rao",
        ((f'netuid="{n}"', d) for n, d in sorted(snapshot.metagraph_differences.items())),
    )
    w.family(
        "bittensor_subnet_next_epoch_block",
        ((f'netuid="{n.netuid}"', n.next_epoch_block) for n in subnets if n.next_epoch_block is not None),
    )
    w.family(
        "bittensor_subnet_epoch_after_next_block",
        ((f'netuid="{n.netuid}"', a.epoch_block) for n in subnets
         if (a := snapshot.after_pending.get(n.netuid)) is not None and a.changes),
    )
    w.family(
        "bittensor_subnet_dissolving",
        ((f'netuid="{n}"', 1) for n in snapshot.dissolving),
    )


def _chain(w: _Writer, snapshot: Snapshot) -> None:
    chain = snapshot.chain
    for name, value in (
        ("bittensor_chain_block", chain.block),
        ("bittensor_chain_block_timestamp_seconds", chain.timestamp_seconds),
        ("bittensor_chain_runtime_spec_version", chain.spec_version),
        ("bittensor_chain_tao_weight_ratio", chain.tao_weight),
        ("bittensor_chain_stake_threshold_alpha", to_units(chain.stake_threshold)),
        ("bittensor_chain_min_childkey_take_ratio", chain.min_take),
        ("bittensor_chain_max_childkey_take_ratio", chain.max_take),
        ("bittensor_chain_pending_childkey_cooldown_blocks", chain.pending_cooldown),
    ):
        w.single(name, value)
    w.family(
        "bittensor_chain_anomalous_entries",
        ((f'rule="{a.rule}",netuid="{"" if a.netuid is None else a.netuid}"', a.count) for a in snapshot.anomalies),
    )
