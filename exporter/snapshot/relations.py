"""The childkey relations of one read: what history follows and what a snapshot exports, pure.

History follows the whole chain's ChildKeys edges and pending sets as stored. The export keeps
those touching a validator in scope, each edge with the alpha the child receives through it, and
the pending sets as the chain will apply them. ChildKeys says what a parent gives and ParentKeys
what a child receives, each read on its own as the chain reads it (``get_inherited_for_hotkey_on_subnet``):
where they do not mirror each other (a state the chain can hold, flagged by ``anomalies``) a ParentKeys
entry without its ChildKeys edge is exported too, and a ChildKeys edge its child does not list passes 0.
"""

from __future__ import annotations

from dataclasses import replace

from exporter.snapshot.model import ChainRead, Edge, PendingChildren, PendingEffect, applied_children
from exporter.snapshot.stake_math import u96f32_from_int, u96f32_mul, u96f32_ratio

_U96F32_ONE = 2**32


def relations_of(read: ChainRead) -> tuple[tuple[Edge, ...], tuple[PendingChildren, ...]]:
    """The chain's ChildKeys edges (by netuid, then parent, children in their stored order) and its
    pending sets as stored: what history follows."""
    chain_edges = tuple(
        Edge(parent=parent, child=child, netuid=netuid, proportion=proportion)
        for (parent, netuid), links in sorted(read.children.items(), key=lambda kv: (kv[0][1], kv[0][0]))
        for proportion, child in links
    )
    chain_pending = tuple(
        PendingChildren(parent=parent, netuid=netuid, children=links, cooldown_block=cooldown)
        for (netuid, parent), (links, cooldown) in sorted(read.pending.items())
    )
    return chain_edges, chain_pending


def exported_relations(read: ChainRead, chain_edges: tuple[Edge, ...], chain_pending: tuple[PendingChildren, ...],
                       touching: set, network: bool, mirrored: bool) -> tuple[tuple[Edge, ...], tuple[PendingChildren, ...]]:
    """The edges and pending sets touching a (hotkey, netuid) of ``touching``. The alpha each parent
    gives: on every exported edge in network mode; otherwise on the edges into a child of ``touching``
    (what it inherits, parent by parent). ``mirrored``: ParentKeys mirrors ChildKeys (nearly always)."""
    linked = chain_edges if mirrored else _with_parent_only_edges(read, chain_edges)
    edges = tuple(
        Edge(e.parent, e.child, e.netuid, e.proportion, _edge_inherited(read, e))
        if network or (e.child, e.netuid) in touching else e
        for e in linked if (e.parent, e.netuid) in touching or (e.child, e.netuid) in touching
    )
    # Exported as the chain will apply them: a swapped list's self entry dropped, a duplicate collapsed.
    pending = tuple(
        _as_applied(p) for p in chain_pending
        if (p.parent, p.netuid) in touching or any((child, p.netuid) in touching for _, child in p.children)
        or any((child, p.netuid) in touching for _, child in read.children.get((p.parent, p.netuid), ()))
    )
    return edges, pending


def _edge_inherited(read: ChainRead, edge: Edge) -> float:
    """Alpha (rao) the child receives through ``edge``: parent's own alpha x the proportion of each of
    the child's ParentKeys entries naming the parent (none: 0; twice: both, as the chain sums them), in U96F32."""
    parent_alpha = u96f32_from_int(read.stake.get((edge.parent, edge.netuid), 0))
    received = 0
    for proportion, parent in read.parents.get((edge.child, edge.netuid), ()):
        if parent == edge.parent:
            received += u96f32_mul(parent_alpha, u96f32_ratio(proportion))
    return received / _U96F32_ONE


def _with_parent_only_edges(read: ChainRead, chain_edges: tuple[Edge, ...]) -> tuple[Edge, ...]:
    """``chain_edges`` and an edge (proportion None) for each ParentKeys entry ChildKeys does not
    list, each after its parent's ChildKeys edges on the subnet."""
    listed = {(e.parent, e.child, e.netuid) for e in chain_edges}
    live = frozenset(read.netuids)
    extra = {
        (parent, child, netuid) for (child, netuid), links in read.parents.items() if netuid in live
        for _, parent in links if (parent, child, netuid) not in listed
    }
    edges = [*chain_edges, *(Edge(p, c, n, None) for p, c, n in sorted(extra, key=lambda k: (k[2], k[0], k[1])))]
    return tuple(sorted(edges, key=lambda e: (e.netuid, e.parent)))  # stable: ChildKeys' order within a parent


def _as_applied(pending: PendingChildren) -> PendingChildren:
    """The pending set as the chain will apply it (``applied_children``); the very object when it is already."""
    children = [child for _, child in pending.children]
    if pending.parent not in children and len(set(children)) == len(children):
        return pending
    applied = applied_children(pending.parent, pending.children)
    return replace(pending, children=tuple((q, c) for c, q in applied.items()))


def pending_effects(read: ChainRead, pending: tuple[PendingChildren, ...]) -> tuple[PendingEffect, ...]:
    """For each pending set, every child it would drop, cut, keep, raise or add."""
    effects = []
    for p in pending:
        now = {child: q for q, child in read.children.get((p.parent, p.netuid), ())}
        later = applied_children(p.parent, p.children)
        for child in sorted(now.keys() | later.keys()):
            effects.append(PendingEffect(p.parent, child, p.netuid, now.get(child, 0), later.get(child, 0)))
    return tuple(effects)
