"""Build the immutable snapshot from one chain read: a pure function, no I/O.

Exported (``validators``): every validator-permit holder on every subnet
(netuid != 0) in the configured filter whose stake weight reaches
``min_stake_weight``, plus every watched hotkey wherever it is registered or
has childkey relationships. Tracked for history (``tracked``): the same
without the netuid and stake filters (see ``scope``). Every other uid is a
permit contender: only its stake weight is computed.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional, Sequence

from exporter.config import ScopeConfig
from exporter.snapshot.model import (
    ChainInfo, ChainRead, EventWindow, Identity, Snapshot, SubnetState, ValidatorState, WatchedKey, frozen,
)
from exporter.snapshot.anomalies import epoch_skipped, find_anomalies
from exporter.snapshot.relations import exported_relations, pending_effects, relations_of
from exporter.snapshot.contenders import inherited_of, stake_inputs, weigh_contenders
from exporter.snapshot.activity import build_activity
from exporter.snapshot.after_pending import AfterPending, due_sets, project_after_pending
from exporter.snapshot.memo import ReadChanges, StakeMemo
from exporter.snapshot.projection import Projection, at_epoch, bits_to_rao, next_epoch_block, next_epoch_block_dynamic, rank
from exporter.snapshot.scope import tracked_candidates
from exporter.snapshot.stake_math import (
    InheritedStake, effective_take, inherited_stake,
)
from exporter.snapshot.units import take_ratio, to_rao, u64_ratio

_U96F32_ONE = 2**32
_I64F64_ONE = 2**64


def _inherited(read: ChainRead, hotkey: str, netuid: int, children=None, parents=None) -> InheritedStake:
    """The chain's stake arithmetic for (hotkey, netuid) on the values of one read
    (``children``, ``parents``: its links after pending sets, instead of the read's)."""
    stake = read.stake
    children = read.children.get((hotkey, netuid), ()) if children is None else children
    parents = read.parents.get((hotkey, netuid), ()) if parents is None else parents
    return inherited_stake(
        own_alpha=stake.get((hotkey, netuid), 0),
        own_root=stake.get((hotkey, 0), 0),
        child_proportions=[p for p, _ in children],
        parents=[(p, stake.get((parent, netuid), 0), stake.get((parent, 0), 0)) for p, parent in parents],
        tao_weight_raw=read.tao_weight,
    )


def _stake_of(read: ChainRead, hotkey: str, netuid: int, uid: Optional[int],
              memo: Optional[StakeMemo] = None, changes: Optional[ReadChanges] = None) -> tuple[ValidatorState, int]:
    """The validator's numbers, and its stake weight as raw I64F64 bits for exact comparisons;
    from ``memo`` when every input is what it was computed from: known without gathering them
    when ``changes`` (since the memo's read) leaves them all out, else compared."""
    permit = _has_permit(read, netuid, uid)
    if changes is not None and changes.state_unchanged(read, (hotkey, netuid)):
        found = memo.unchanged_state((hotkey, netuid))  # type: ignore[union-attr]
        if found is not None and found[0].uid == uid and found[0].permit == permit:
            return found
    inputs = (
        stake_inputs(read, hotkey, netuid), read.tao_weight, uid, permit,
        read.takes.get((hotkey, netuid), 0), read.min_take,
        read.min_take_per_subnet.get(netuid) if read.min_take_per_subnet is not None else None,
        read.suspended.get((hotkey, netuid), False) if read.suspended is not None else None,
    )
    if memo is not None and (found := memo.state((hotkey, netuid), inputs)) is not None:
        return found
    own_inputs, tao_weight, _, permit, take, min_take, subnet_min, suspended = inputs
    result = inherited_of(own_inputs, tao_weight)
    state = ValidatorState(
        hotkey=hotkey,
        netuid=netuid,
        uid=uid,
        permit=permit,
        own_alpha=result.own,
        root_tao=result.root,
        to_children_alpha=result.to_children_fixed / _U96F32_ONE,
        from_parents_alpha=result.from_parents_fixed / _U96F32_ONE,
        inherited_alpha=result.inherited,
        inherited_root_tao=result.root_inherited,
        stake_weight=result.stake_weight_fixed / _I64F64_ONE,
        childkey_take=take_ratio(effective_take(take, min_take, subnet_min)),
        parents=len(own_inputs[3]),
        children=len(own_inputs[2]),
        suspended=suspended,
        stored_childkey_take=take_ratio(take),
    )
    if memo is not None:
        memo.keep_state((hotkey, netuid), inputs, (state, result.stake_weight_fixed))
    return state, result.stake_weight_fixed


def _tracked_in_order(read: ChainRead, watched: dict, memo: Optional[StakeMemo]) -> list:
    """((hotkey, netuid), uid) of every tracked candidate, by netuid then hotkey (the snapshot's
    order); the last build's list when the candidates are the same (sorting them is ~15 ms)."""
    candidates = memo.candidates(read, frozenset(watched)) if memo is not None else tracked_candidates(read, frozenset(watched))
    ordered = memo.order(candidates) if memo is not None else None
    if ordered is None:
        ordered = sorted(candidates.items(), key=lambda kv: (kv[0][1], kv[0][0]))
    if memo is not None:
        memo.keep_order(candidates, ordered)
    return ordered


def _has_permit(read: ChainRead, netuid: int, uid: Optional[int]) -> bool:
    permits = read.permits.get(netuid, ())
    return uid is not None and uid < len(permits) and permits[uid]


def build_snapshot(read: ChainRead, scope: ScopeConfig, memo: Optional[StakeMemo] = None) -> Snapshot:
    """The snapshot of ``read``. ``memo``: the stake results of the caller's previous builds, reused
    where their inputs are unchanged and replaced by this build's (see ``memo``); the snapshot is
    the same with or without it."""
    changes = None
    if memo is not None:
        changes = memo.changes(read)
        memo.start(read)
    watched = {w.hotkey: w for w in scope.watch}
    anomalies = find_anomalies(read, memo.anomaly_parts if memo is not None else None)
    skipped = epoch_skipped(anomalies)
    min_weight_fixed = to_rao(scope.min_stake_weight) * _I64F64_ONE
    tracked, validators = [], []
    # The subnets projected, each with its stake weights by uid (I64F64 bits; None until weighed).
    weights: dict[int, list] = {
        netuid: [None] * _subnet_size(read, netuid)
        for netuid in read.netuids if netuid != 0 and scope.includes_netuid(netuid)
    }
    for (hotkey, netuid), uid in _tracked_in_order(read, watched, memo):
        state, weight_fixed = _stake_of(read, hotkey, netuid, uid, memo, changes)
        tracked.append(state)
        row = weights.get(netuid)
        if uid is not None and row is not None and uid < len(row):
            row[uid] = weight_fixed
        if _exported(scope, hotkey, netuid, watched, weight_fixed >= min_weight_fixed):
            validators.append(state)
    owner_uids = weigh_contenders(read, weights, memo, changes)
    projections = {netuid: _project(read, netuid, row, owner_uids.get(netuid), memo, netuid in skipped)
                   for netuid, row in weights.items()}
    if memo is not None:
        memo.finish()
    pending_of: dict[int, dict] = {}  # netuid -> its pending sets
    for key, value in read.pending.items():
        pending_of.setdefault(key[0], {})[key] = value
    after_pending = {
        netuid: found for netuid, projection in projections.items() if netuid in pending_of and netuid not in skipped
        and (found := _project_after_pending(read, projection, weights[netuid], pending_of[netuid])) is not None
    }
    in_scope = {(v.hotkey, v.netuid) for v in validators}
    related = {h for h, _ in (*read.children, *read.parents) if h in watched}

    chain_edges, chain_pending = relations_of(read)
    # Edges and pending sets touching a validator exported (in watched mode: a watched hotkey).
    touching = in_scope if scope.mode == "network" else {(h, n) for h, n in in_scope if h in watched}
    mirrored = not any(a.rule == "parents_do_not_mirror_children" for a in anomalies)
    edges, pending = exported_relations(read, chain_edges, chain_pending, touching, scope.mode == "network", mirrored)
    identities = tuple(
        Identity(hotkey=h, coldkey=read.coldkeys.get(h, ""), alias=watched[h].alias if h in watched else "", watched=h in watched)
        for h in sorted({v.hotkey for v in validators})
    )
    if memo is not None:
        identities = tuple(map(memo.identity, identities))
    # In watched mode only the subnets a watched validator is judged on.
    exported_subnets = {n for _, n in in_scope} if scope.mode == "watched" else None
    subnets = tuple(
        _subnet(read, projections[netuid])
        for netuid in read.netuids
        if netuid != 0 and scope.includes_netuid(netuid) and (exported_subnets is None or netuid in exported_subnets)
    )
    changes = {
        (v.hotkey, v.netuid): projected
        for v in validators
        if v.uid is not None and v.netuid in projections
        and (projected := _projected_permit(projections[v.netuid], v.uid)) != v.permit
    }
    snapshot = Snapshot(
        chain=ChainInfo(
            block=read.block,
            block_hash=read.block_hash,
            timestamp_seconds=read.timestamp_ms / 1000,
            spec_version=read.spec_version,
            tao_weight=u64_ratio(read.tao_weight),
            stake_threshold=read.stake_threshold,
            min_take=take_ratio(read.min_take),
            max_take=take_ratio(read.max_take),
            pending_cooldown=read.pending_cooldown,
        ),
        validators=tuple(validators),
        edges=edges,
        pending=pending,
        identities=identities,
        subnets=subnets,
        chain_edges=chain_edges,
        chain_pending=chain_pending,
        tracked=tuple(tracked),
        pending_effects=pending_effects(read, pending),
        watched=tuple(
            WatchedKey(w.hotkey, w.alias, tuple(sorted(n for (n, h) in read.watched_uids if h == w.hotkey)),
                       related=w.hotkey in related)
            for w in scope.watch
        ),
        expected_takes={h: w.expected_take for h, w in watched.items() if w.expected_take is not None},
        projected_permit_changes=changes,
        projected_permits={n: p.permits for n, p in projections.items()},
        after_pending=after_pending,
        permit_changes_after_pending={
            (v.hotkey, v.netuid): change
            for v in validators
            if v.uid is not None and v.netuid in after_pending
            and (change := after_pending[v.netuid].changes.get(v.uid)) is not None
        },
        metagraph_differences={n: _metagraph_difference(read, n, m) for n, m in read.metagraphs.items()},
        events=_event_window(read),
        netuids=read.netuids,
        dissolving=tuple(n for n in read.dissolving if scope.includes_netuid(n)),
        anomalies=anomalies,
    )
    return replace(snapshot, activity=build_activity(read, snapshot))


def _event_window(read: ChainRead) -> Optional[EventWindow]:
    """The events read, with what history needs to place changes that have none: each subnet's epoch
    blocks in the window and its lowest effective take."""
    window = read.events
    if window is None:
        return None
    epochs = {}
    for netuid in read.netuids:
        if netuid == 0:
            continue
        tempo = read.tempos.get(netuid, 0)
        if read.last_epoch_blocks is not None:
            # Dynamic tempo: only the last epoch is known for certain (deferrals move the others).
            last = read.last_epoch_blocks.get(netuid, 0)
            blocks = (last,) if window.first <= last <= window.last else ()
        else:
            blocks = tuple(_epoch_blocks(window.first, window.last, netuid, tempo))
        if blocks:
            epochs[netuid] = blocks
    floors = {
        n: effective_take(0, read.min_take, read.min_take_per_subnet.get(n) if read.min_take_per_subnet is not None else None)
        for n in read.netuids
    }
    return replace(window, epochs=frozen(epochs), take_floors=frozen(floors))


def _epoch_blocks(first: int, last: int, netuid: int, tempo: int):
    block = next_epoch_block(first - 1, netuid, tempo)
    while block is not None and block <= last:
        yield block
        block = next_epoch_block(block, netuid, tempo)


def _exported(scope: ScopeConfig, hotkey: str, netuid: int, watched: dict, heavy_enough: bool) -> bool:
    """Whether a tracked validator is exported: the netuid filter, then the mode and the stake filter."""
    if not scope.includes_netuid(netuid):
        return False
    if hotkey in watched:
        return True
    return scope.mode == "network" and heavy_enough


def _metagraph_difference(read: ChainRead, netuid: int, metagraph) -> int:
    """Largest difference (rao) between the chain's own inherited alpha, inherited root and
    floored stake weight per uid (its metagraph runtime API) and what this exporter computes."""
    hotkeys = list(metagraph.get("hotkeys") or ())
    columns = [list(metagraph.get(name) or ()) for name in ("alpha_stake", "tao_stake", "total_stake")]
    worst = 0 if all(len(c) == len(hotkeys) for c in columns) else 1
    for uid, hotkey in enumerate(hotkeys[:min(map(len, columns))]):
        ours = _inherited(read, hotkey, netuid)
        for mine, theirs in ((ours.inherited, columns[0][uid]), (ours.root_inherited, columns[1][uid]),
                             (ours.stake_weight_fixed >> 64, columns[2][uid])):
            worst = max(worst, abs(mine - int(theirs)))
    return worst


def _subnet_size(read: ChainRead, netuid: int) -> int:
    """Uids the epoch ranks: SubnetworkN, or the permit vector's length if longer."""
    return max(read.subnet_sizes.get(netuid, 0), len(read.permits.get(netuid, ())))


def _project(read: ChainRead, netuid: int, weights: list[int], owner_uid: Optional[int],
             memo: Optional[StakeMemo] = None, skipped: bool = False) -> Projection:
    """``weights``: the subnet's stake weights by uid; the ranking from ``memo`` when they, the
    threshold, the owner's uid and k are what it was ranked from (most subnets between refreshes).
    ``skipped``: the chain skips the epoch (a hotkey twice in Keys): the permits stay as they are,
    and no rank boundary decides anything."""
    tempo = read.tempos.get(netuid, 0)
    epoch_block: Optional[int] = -1  # classic schedule
    if read.last_epoch_blocks is not None:
        epoch_block = next_epoch_block_dynamic(
            read.block, tempo, read.last_epoch_blocks.get(netuid, 0), (read.pending_epoch_at or {}).get(netuid, 0))
    if skipped:
        permits = tuple(read.permits.get(netuid, ()))[:len(weights)]
        return at_epoch(netuid, read.block, tempo, (permits + (False,) * (len(weights) - len(permits)), None, None), epoch_block)
    inputs = (tuple(weights), read.stake_threshold, owner_uid, read.max_validators.get(netuid, 0))
    ranking = memo.ranking(netuid, inputs) if memo is not None else None
    if ranking is None:
        ranking = rank(*inputs)
        if memo is not None:
            memo.keep_ranking(netuid, inputs, ranking)
    return at_epoch(netuid, read.block, tempo, ranking, epoch_block)


def _project_after_pending(read: ChainRead, projection: Projection, weights: Sequence[int],
                           pending: dict) -> Optional[AfterPending]:
    """The epoch after next where pending sets apply at the next epoch (see ``after_pending``); None elsewhere."""
    netuid, apply_block = projection.netuid, projection.next_epoch_block
    if apply_block is None:
        return None
    sets = due_sets(pending, netuid, apply_block)
    if not sets:
        return None
    tempo = read.tempos.get(netuid, 0)
    # Classic schedule: the next slot; dynamic tempo: LastEpochBlock (then E1) + tempo.
    epoch_block = apply_block + tempo + (1 if read.last_epoch_blocks is None else 0)
    size = len(projection.permits)
    hotkeys = [read.hotkeys.get((netuid, uid)) for uid in range(size)]
    owner = read.owners.get(netuid)
    tao_weight = read.tao_weight / 2**64
    return project_after_pending(
        netuid, apply_block, epoch_block, sets, hotkeys,
        weights, projection.permits,
        children_of=lambda h: read.children.get((h, netuid), ()),
        parents_of=lambda h: read.parents.get((h, netuid), ()),
        stake_weight=lambda h, kids, pars: _inherited(read, h, netuid, kids, pars).stake_weight_fixed,
        stake_value=lambda h: read.stake.get((h, netuid), 0) + tao_weight * read.stake.get((h, 0), 0),
        threshold_rao=read.stake_threshold,
        owner_uid=next((uid for uid, h in enumerate(hotkeys) if owner is not None and h == owner), None),
        k=read.max_validators.get(netuid, 0),
    )


def _projected_permit(projection: Projection, uid: int) -> bool:
    return uid < len(projection.permits) and projection.permits[uid]


def _subnet(read: ChainRead, projection: Projection) -> SubnetState:
    netuid = projection.netuid
    return SubnetState(
        netuid=netuid,
        max_validators=read.max_validators.get(netuid, 0),
        permits=sum(read.permits.get(netuid, ())),
        permit_cutoff_stake_weight=bits_to_rao(projection.cutoff),
        top_contender_stake_weight=bits_to_rao(projection.first_out),
        next_epoch_block=projection.next_epoch_block,
    )
