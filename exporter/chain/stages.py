"""The four stages of one read at one block: what each asks a ``StorageSource`` for, and the ``ChainRead`` it makes.

The plan is four dependent stages, each a handful of bulk requests in parallel
(a failed request cancels the rest of the read: see ``gather_or_cancel``):

1. chain constants, the subnet list and sizes, validator permits, and every childkey map
   (a subnet being dissolved is no subnet: its leftover entries are dropped here,
   ``snapshot/dissolution.py``, so no later stage asks for or computes anything of it);
2. the hotkeys behind every uid (and the uids of watched hotkeys), each subnet's k, tempo and owner;
3. stakes of those hotkeys and their parents, on their subnet and root; takes and
   coldkeys of the tracked validators (permit holders and watched hotkeys);
4. as a check, the runtime's own metagraph of a few subnets of watched hotkeys.

Every uid is read, not only permit holders: the change history follows every
permit holder whatever the export scope, and the strongest uid without a
permit is what a holder's permit is at risk against. No request is ever made
per validator: ~90,000 keys at mainnet scale take ~40 batched requests.

The stages only ask a ``StorageSource`` for decoded values, so they run as well
against a ``StorageReader`` pinned to a block (``reader.ChainReader`` opens it)
as against an in-memory source holding literal values.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace
from typing import Any, Optional, Protocol, Sequence

from exporter.config import ScopeConfig
from exporter.snapshot.dissolution import without_dissolved
from exporter.snapshot.model import ChainRead, frozen
from exporter.snapshot.read_rules import MAX_NETUIDS
from exporter.chain.activity import read_activity
from exporter.chain.answers import PAGE_SIZE
from exporter.chain.plans import NOT_AHEAD, ReadAhead, ReadPlans, StakePlan, UidPlan, cancelled, nonzero, someone
from exporter.chain.storage import gather_or_cancel

# Runtime items that only some runtimes declare; read when present.
MIN_TAKE_PER_SUBNET = "MinChildkeyTakePerSubnet"
THRESHOLD_SUSPENDED = "ChildkeyThresholdSuspended"
LAST_EPOCH_BLOCK = "LastEpochBlock"  # dynamic tempo (spec 423 on)
PENDING_EPOCH_AT = "PendingEpochAt"
DISSOLVE_QUEUE = "DissolveCleanupQueue"  # subnets dissolved, their storage still being deleted (PR #2412)
_SHARD_FILL = 0.8  # aim for pages 80 % full so a growing map rarely needs a second page

# Maps keyed by netuid alone hold at most one entry per subnet, so their scans
# stop at the netuid bound. Every other map (keyed by hotkey and netuid: as many
# entries as the chain has parents, children, flagged hotkeys) is read whatever
# its size; only the read's scan budget in bytes (``ScanBudget``) stops one.
NETUID_KEYED = frozenset({
    "NetworksAdded", "ValidatorPermit", "SubnetworkN", MIN_TAKE_PER_SUBNET,
})


class StorageSource(Protocol):
    """Decoded storage at one block: what the plan needs of a ``StorageReader``."""

    block_hash: str

    def has_item(self, item: str) -> bool: ...

    async def values(self, reads: Sequence[tuple[str, list]], pallet: str = ...) -> list[Any]: ...

    async def batch(self, item: str, params_list: Sequence[list]) -> list[Any]: ...

    async def scan(self, item: str, *, shards: int = 1, max_keys: Optional[int] = None) -> list[tuple[Any, Any]]: ...

    def has_runtime_api(self, api: str, method: str) -> bool: ...

    async def runtime_call(self, api: str, method: str, params: Sequence[Any]) -> Any: ...


class ReadStages:
    """The four stages of one read; remembers map sizes to shard the next scan, and what stages 2
    and 3 asked for to ask it again ahead of time."""

    def __init__(self) -> None:
        self._map_sizes: dict[str, int] = {}
        self._stake_keys: Optional[set] = None  # of the last read_from
        self._plans = ReadPlans()  # what stages 2 and 3 asked for, kept from read to read

    def _shards(self, item: str) -> int:
        size = self._map_sizes.get(item, 2 * PAGE_SIZE)
        return max(1, min(32, math.ceil(size / (PAGE_SIZE * _SHARD_FILL))))

    def scan_cap(self, item: str) -> Optional[int]:
        """The most keys a scan of ``item`` may list before the read is refused (None: only the byte budget)."""
        return MAX_NETUIDS if item in NETUID_KEYED else None

    async def _scan(self, source: StorageSource, item: str) -> list[tuple[Any, Any]]:
        rows = await source.scan(item, shards=self._shards(item), max_keys=self.scan_cap(item))
        self._map_sizes[item] = len(rows)
        return rows

    async def read_from(self, source: StorageSource, scope: ScopeConfig, *, block: int, spec_version: int) -> ChainRead:
        """The four-stage plan against ``source`` (all of it at ``source.block_hash``).

        Stages 2 and 3 ask for what stage 1 and 2 say to ask for, which between two refreshes
        is nearly always what the last read asked: they are sent at once with the last read's
        plans (``ReadAhead``) and their answers used only when the plan turns out the very
        same; otherwise they are dropped and the stage asks for its own. Either way every value
        comes from this block, so the read is what the stages one after another would read,
        two round trips sooner.
        """
        ahead = ReadAhead()
        structure = asyncio.ensure_future(self._read_structure(source, block, spec_version))
        try:
            if (uids := self._plans.last_uids) is not None:
                ahead.start("hotkeys", uids, self._fetch_hotkeys(source, uids))
            if (stakes := self._plans.last_stakes) is not None:
                ahead.start("stakes", stakes, self._fetch_stakes(source, stakes))
            partial = await structure
            partial = _without_inert_edges(await self._read_hotkeys(source, partial, scope, ahead))
            partial = await self._read_stakes(source, partial, scope, ahead)
            checked, activity = await gather_or_cancel(
                self._read_metagraphs(source, partial, scope), read_activity(source, partial, scope))
            return replace(checked, activity=activity)
        finally:
            if not structure.done():  # the read was cancelled while stage 1 ran
                await cancelled(structure)
            await ahead.drop()

    async def _read_structure(self, source: StorageSource, block: int, spec_version: int) -> ChainRead:
        optional_scans = [item for item in (MIN_TAKE_PER_SUBNET, THRESHOLD_SUSPENDED) if source.has_item(item)]
        queue_read = [(DISSOLVE_QUEUE, [])] if source.has_item(DISSOLVE_QUEUE) else []
        plain, now, networks, permits, sizes, children, parents, pending, *optional = await gather_or_cancel(
            source.values(
                [("TaoWeight", []), ("StakeThreshold", []), ("MinChildkeyTake", []),
                 ("MaxChildkeyTake", []), ("PendingChildKeyCooldown", []), *queue_read]
            ),
            source.values([("Now", [])], pallet="Timestamp"),
            self._scan(source, "NetworksAdded"),
            self._scan(source, "ValidatorPermit"),
            self._scan(source, "SubnetworkN"),
            self._scan(source, "ChildKeys"),
            self._scan(source, "ParentKeys"),
            self._scan(source, "PendingChildKeys"),
            *(self._scan(source, item) for item in optional_scans),
        )
        extras = dict(zip(optional_scans, optional))
        tao_weight, threshold, min_take, max_take, cooldown, *queue = plain
        # A dissolving subnet's leftovers are dropped here, before anything is derived from them.
        return without_dissolved(ChainRead(
            block=block,
            block_hash=source.block_hash,
            timestamp_ms=int(now[0]),
            spec_version=spec_version,
            tao_weight=int(tao_weight),
            stake_threshold=int(threshold),
            min_take=int(min_take),
            max_take=int(max_take),
            pending_cooldown=int(cooldown),
            netuids=tuple(sorted(int(n) for n, added in networks if added)),
            permits=frozen({int(n): tuple(map(bool, v)) for n, v in permits}),
            max_validators=frozen({}),
            hotkeys=frozen({}),
            watched_uids=frozen({}),
            children=self._plans.derived("ChildKeys", children, _link_sets),
            parents=self._plans.derived("ParentKeys", parents, _link_sets),
            pending=self._plans.derived("PendingChildKeys", pending, _pending_sets),
            stake=frozen({}),
            takes=frozen({}),
            coldkeys=frozen({}),
            min_take_per_subnet=_per_subnet(extras.get(MIN_TAKE_PER_SUBNET)),
            suspended=_suspensions(extras.get(THRESHOLD_SUSPENDED)) if THRESHOLD_SUSPENDED in extras else None,
            subnet_sizes=frozen({int(n): int(v) for n, v in sizes}),
        ), queue[0] if queue else None)

    async def _fetch_hotkeys(self, source: StorageSource, plan: UidPlan) -> list:
        """Stage 2's requests for ``plan`` (``ReadPlans.uids``)."""
        uid_keys, watch_keys, subnets = plan
        dynamic = source.has_item(LAST_EPOCH_BLOCK)  # dynamic tempo: the runtime says when epochs run
        return await gather_or_cancel(
            source.batch("Keys", uid_keys), source.batch("Uids", watch_keys), source.batch("MaxAllowedValidators", subnets),
            source.batch("Tempo", subnets), source.batch("SubnetOwnerHotkey", subnets),
            *((source.batch(LAST_EPOCH_BLOCK, subnets), source.batch(PENDING_EPOCH_AT, subnets)) if dynamic else ()),
        )

    async def _read_hotkeys(self, source: StorageSource, read: ChainRead, scope: ScopeConfig,
                            ahead: Optional[ReadAhead] = None) -> ChainRead:
        """The hotkey of every uid on every subnet (permit holders are tracked, the rest contend
        for permits), and the uids of watched hotkeys on every subnet, root included."""
        # k, tempo and owner of every subnet are read by key so a subnet without an entry gets
        # the runtime's default (k 128, tempo 360 in spec 393), as the chain does.
        plan = self._plans.uids(read, scope)
        uid_keys, watch_keys, subnets = plan
        fetched = await ahead.take("hotkeys", plan) if ahead is not None else NOT_AHEAD
        if fetched is NOT_AHEAD:
            fetched = await self._fetch_hotkeys(source, plan)
        dynamic = source.has_item(LAST_EPOCH_BLOCK)
        hotkeys, uids, ks, tempos, owners, *epochs = fetched
        return replace(
            read,
            hotkeys=self._plans.hotkeys_by_uid(read, uid_keys, hotkeys),
            watched_uids=frozen({(n, h): int(uid) for (n, h), uid in zip(watch_keys, uids) if uid is not None}),
            max_validators=frozen({n: int(v) for (n,), v in zip(subnets, ks)}),
            tempos=frozen({n: int(v) for (n,), v in zip(subnets, tempos)}),
            owners=frozen({n: str(v) for (n,), v in zip(subnets, owners) if someone(v)}),
            last_epoch_blocks=frozen({n: int(v or 0) for (n,), v in zip(subnets, epochs[0])}) if dynamic else None,
            pending_epoch_at=frozen({n: int(v or 0) for (n,), v in zip(subnets, epochs[1])}) if dynamic else None,
        )

    async def _read_metagraphs(self, source: StorageSource, read: ChainRead, scope: ScopeConfig) -> ChainRead:
        """The chain's own numbers for a few subnets of watched hotkeys, to check ours against."""
        if not source.has_runtime_api("SubnetInfoRuntimeApi", "get_selective_metagraph"):
            return read
        subnets = sorted({n for n, _ in read.watched_uids if n != 0})
        if not subnets:
            return read
        start = (read.block * METAGRAPH_CHECKS) % len(subnets)  # turns by block
        chosen = [subnets[(start + i) % len(subnets)] for i in range(min(METAGRAPH_CHECKS, len(subnets)))]
        answers = await gather_or_cancel(*(
            source.runtime_call("SubnetInfoRuntimeApi", "get_selective_metagraph", [n, METAGRAPH_INDEXES]) for n in chosen
        ))
        return replace(read, metagraphs=frozen({n: a for n, a in zip(chosen, answers) if isinstance(a, dict)}))

    async def _fetch_stakes(self, source: StorageSource, plan: StakePlan) -> list:
        """Stage 3's requests for ``plan``."""
        return await gather_or_cancel(
            source.batch("TotalHotkeyAlpha", plan.stake_params),
            source.batch("ChildkeyTake", plan.take_params),
            source.batch("Owner", plan.owner_params),
        )

    async def _read_stakes(self, source: StorageSource, read: ChainRead, scope: ScopeConfig,
                           ahead: Optional[ReadAhead] = None) -> ChainRead:
        plan = self._plans.stakes(read, scope)
        self._stake_keys = plan.keys  # the gate checks the same keys' stakes
        fetched = await ahead.take("stakes", plan) if ahead is not None else NOT_AHEAD
        if fetched is NOT_AHEAD:
            fetched = await self._fetch_stakes(source, plan)
        stakes, takes, coldkeys = fetched
        return replace(
            read,
            stake=frozen(nonzero(plan.stake_list, stakes)),
            takes=frozen(nonzero(plan.take_list, takes)),
            coldkeys=frozen(dict(zip(plan.owners, coldkeys))),
        )

METAGRAPH_INDEXES = [52, 67, 68, 69]  # hotkeys, alpha_stake, tao_stake, total_stake
METAGRAPH_CHECKS = 4  # subnets per refresh, taking turns: a check, not a second read of everything


def _link_sets(rows) -> Any:
    """(hotkey, netuid) -> its links, of a ChildKeys or ParentKeys scan."""
    return frozen({(h, int(n)): _links(v) for (h, n), v in rows if v})


def _pending_sets(rows) -> Any:
    """(netuid, parent) -> (its children, cooldown block), of a PendingChildKeys scan."""
    return frozen({(int(n), h): (_links(v[0]), int(v[1])) for (n, h), v in rows})


def _links(value) -> tuple[tuple[int, str], ...]:
    return tuple((int(proportion), str(other)) for proportion, other in value)


def _per_subnet(rows) -> Any:
    return None if rows is None else frozen({int(n): int(v) for n, v in rows})


def _suspensions(rows) -> Any:
    """(hotkey, netuid) -> suspended, whatever order the runtime puts the key parts in; a key of
    the hotkey alone (the chain's layout, value ``()``: present means suspended) reads as
    (hotkey, None), every subnet, until ``_without_inert_edges`` knows the subnets' owners."""
    suspended = {}
    for key, value in rows or []:
        parts = key if isinstance(key, tuple) else (key,)
        hotkey = next((p for p in parts if isinstance(p, str)), None)
        netuid = next((p for p in parts if isinstance(p, int)), None)
        if hotkey is not None:
            suspended[(hotkey, netuid)] = value is None or value == () or bool(value)
    return frozen(suspended)


def _without_inert_edges(read: ChainRead) -> ChainRead:
    """The read as the chain's ``get_children`` / ``get_parents`` see it (``set_children.rs``
    ``childkeys_suspended``): a suspended parent's edges are left out on every subnet but one
    whose ``SubnetOwnerHotkey`` it is, on both sides (its children, and it among its children's
    parents), so the stake arithmetic, the relationships and the projection all skip them.
    ``suspended`` then holds (hotkey, netuid) for every subnet with childkeys but root."""
    if read.suspended is None:
        return read
    subnets = [n for n in read.netuids if n != 0]
    suspended = {}
    for (hotkey, netuid), flag in read.suspended.items():
        for n in subnets if netuid is None else (netuid,):
            suspended[(hotkey, n)] = flag and read.owners.get(n) != hotkey
    if not any(suspended.values()):
        return replace(read, suspended=frozen(suspended))
    inert = {key for key, flag in suspended.items() if flag}
    return replace(
        read,
        suspended=frozen(suspended),
        children=frozen({key: links for key, links in read.children.items() if key not in inert}),
        parents=frozen({
            (child, n): live for (child, n), links in read.parents.items()
            if (live := tuple(link for link in links if (link[1], n) not in inert))
        }),
    )
