"""The data that flows one way: what the chain reader read, and the snapshot built from it.

Both are immutable: a snapshot is published to scrapes and history by
reference, so nothing downstream may change it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping, Optional

if TYPE_CHECKING:
    from exporter.snapshot.activity_model import ActivityRead, ActivitySnapshot
    from exporter.snapshot.after_pending import AfterPending, PermitChange

# (proportion as a u64 fraction of u64::MAX, other hotkey)
Link = tuple[int, str]


def frozen(mapping: dict) -> Mapping:
    return MappingProxyType(mapping)


def applied_children(parent: str, links: tuple[Link, ...]) -> dict[str, int]:
    """child -> proportion of a child list as the chain applies it (``load_relations_from_pending``):
    the parent itself dropped, a child listed twice kept once with its last proportion. A hotkey
    swap can leave a pending list like that; ChildKeys never holds one."""
    return {child: proportion for proportion, child in links if child != parent}


@dataclass(frozen=True)
class ChainRead:
    """Everything one refresh read, all at ``block_hash``: raw chain values, no math."""

    block: int
    block_hash: str
    timestamp_ms: int
    spec_version: int
    tao_weight: int  # u64 fraction of u64::MAX
    stake_threshold: int  # rao of stake weight
    min_take: int  # u16 fractions of 65535
    max_take: int
    pending_cooldown: int  # blocks
    netuids: tuple[int, ...]  # subnets that exist: NetworksAdded, less any netuid in DissolveCleanupQueue
    permits: Mapping[int, tuple[bool, ...]]  # netuid -> ValidatorPermit by uid
    max_validators: Mapping[int, int]  # netuid -> MaxAllowedValidators
    hotkeys: Mapping[tuple[int, int], str]  # (netuid, uid) -> hotkey, for the uids read
    watched_uids: Mapping[tuple[int, str], int]  # (netuid, hotkey) -> uid, watched hotkeys only
    children: Mapping[tuple[str, int], tuple[Link, ...]]  # (parent, netuid) -> ChildKeys
    parents: Mapping[tuple[str, int], tuple[Link, ...]]  # (child, netuid) -> ParentKeys
    pending: Mapping[tuple[int, str], tuple[tuple[Link, ...], int]]  # (netuid, parent) -> (children, cooldown block)
    stake: Mapping[tuple[str, int], int]  # (hotkey, netuid) -> TotalHotkeyAlpha; netuid 0 is root TAO
    takes: Mapping[tuple[str, int], int]  # (hotkey, netuid) -> ChildkeyTake
    coldkeys: Mapping[str, str]  # hotkey -> Owner
    # Items only newer runtimes have; None when the connected runtime lacks them.
    min_take_per_subnet: Optional[Mapping[int, int]] = None
    suspended: Optional[Mapping[tuple[str, int], bool]] = None
    # netuid -> SubnetworkN (uids registered); ValidatorPermit is only as long
    # as the subnet was at its last epoch, so uids registered since lie beyond it.
    subnet_sizes: Mapping[int, int] = field(default_factory=dict)
    tempos: Mapping[int, int] = field(default_factory=dict)  # netuid -> Tempo (0: no epochs)
    owners: Mapping[int, str] = field(default_factory=dict)  # netuid -> SubnetOwnerHotkey
    # Dynamic tempo (runtimes from mid-2026): netuid -> LastEpochBlock, PendingEpochAt; None when
    # the runtime lacks them (then the classic schedule holds).
    last_epoch_blocks: Optional[Mapping[int, int]] = None
    pending_epoch_at: Optional[Mapping[int, int]] = None
    # netuid -> the chain's own numbers for some subnets of watched hotkeys
    # (SubnetInfoRuntimeApi.get_selective_metagraph: hotkeys, alpha_stake, tao_stake, total_stake).
    metagraphs: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    # The chain's events since the block history last recorded (None: not asked for).
    events: Optional["EventWindow"] = None
    # Netuids being dissolved: outside NetworksAdded, yet queued in DissolveCleanupQueue or with
    # entries left in the maps read. Not subnets: the maps above hold nothing of them
    # (``dissolution.without_dissolved``).
    dissolving: tuple[int, ...] = ()
    # Weight-setting liveness and earnings of the tracked validators (activity_model.py).
    activity: Optional["ActivityRead"] = None


@dataclass(frozen=True, slots=True)
class ValidatorState:
    """One (hotkey, netuid) in scope; amounts in rao, ratios 0-1."""

    hotkey: str
    netuid: int
    uid: Optional[int]
    permit: bool
    own_alpha: int
    root_tao: int
    to_children_alpha: float
    from_parents_alpha: float
    inherited_alpha: int
    inherited_root_tao: int
    stake_weight: float
    childkey_take: float  # effective: max(ChildkeyTake, MinChildkeyTake, MinChildkeyTakePerSubnet), never capped
    parents: int  # ParentKeys entries (a parent listed twice counts twice, as the chain counts its stake)
    children: int
    suspended: Optional[bool] = None
    stored_childkey_take: float = 0.0  # ChildkeyTake as stored (0 when absent)


@dataclass(frozen=True, slots=True)
class Edge:
    """A parent -> child link. ChildKeys says what the parent gives, ParentKeys what the child
    receives; they are one edge where they mirror each other (nearly always)."""

    parent: str
    child: str
    netuid: int
    proportion: Optional[int]  # u64 fraction of u64::MAX, from ChildKeys; None: ParentKeys lists it, ChildKeys not
    # Alpha (rao, U96F32 precision) the child receives from the parent through its ParentKeys entries
    # (0 where they do not list the parent): set on exported edges.
    inherited_alpha: Optional[float] = None


@dataclass(frozen=True, slots=True)
class Anomaly:
    """A state real storage can hold that no write path makes (``anomalies``): how many entries
    break ``rule`` on ``netuid`` (None: a chain-wide value)."""

    rule: str
    netuid: Optional[int]
    count: int


@dataclass(frozen=True, slots=True)
class PendingChildren:
    parent: str
    netuid: int
    children: tuple[Link, ...]  # empty: a scheduled revocation
    cooldown_block: int


@dataclass(frozen=True, slots=True)
class PendingEffect:
    """What a scheduled child set will do to one child when it applies (u64 fractions of u64::MAX)."""

    parent: str
    child: str
    netuid: int
    current: int  # 0: not a child now
    pending: int  # 0: dropped by the set

    @property
    def change(self) -> int:
        return self.pending - self.current


@dataclass(frozen=True, slots=True)
class WatchedKey:
    """A watched hotkey, the subnets (root included) where it holds a uid, and whether it
    has childkey relationships (a parent can make any hotkey its child); neither: not found."""

    hotkey: str
    alias: str
    netuids: tuple[int, ...]
    related: bool = False

    @property
    def found(self) -> bool:
        return bool(self.netuids) or self.related


@dataclass(frozen=True, slots=True)
class Identity:
    hotkey: str
    coldkey: str
    alias: str
    watched: bool = False


@dataclass(frozen=True, slots=True)
class SubnetState:
    netuid: int
    max_validators: int  # k in the top-k permit rule
    permits: int  # uids holding a permit from the last epoch
    # The rank boundaries of the next epoch at this block's stake weights (rao),
    # among uids that pass StakeThreshold (and the owner's): the k-th strongest
    # (the weakest the epoch would give a permit by rank; None while k or fewer
    # are eligible) and the (k+1)-th (the strongest it would leave out; None
    # when none is left out). A holder below the contender, or below
    # StakeThreshold, loses its permit at the next epoch if nothing else changes.
    permit_cutoff_stake_weight: Optional[float]
    top_contender_stake_weight: Optional[float] = None
    next_epoch_block: Optional[int] = None  # classic schedule; None: tempo 0, no epoch will run


@dataclass(frozen=True)
class ChainInfo:
    block: int
    block_hash: str
    timestamp_seconds: float
    spec_version: int
    tao_weight: float  # ratio 0-1
    stake_threshold: int  # rao
    min_take: float
    max_take: float
    pending_cooldown: int


@dataclass(frozen=True)
class Snapshot:
    """One consistent picture of every validator in scope, at one finalized block."""

    chain: ChainInfo
    validators: tuple[ValidatorState, ...]
    edges: tuple[Edge, ...]
    pending: tuple[PendingChildren, ...]
    identities: tuple[Identity, ...]
    subnets: tuple[SubnetState, ...] = ()
    expected_takes: Mapping[str, float] = field(default_factory=dict)  # hotkey -> ratio
    # (hotkey, netuid) -> True/False where the next epoch would give / take a permit
    # that the last epoch did not / did: only the changes.
    projected_permit_changes: Mapping[tuple[str, int], bool] = field(default_factory=dict)
    projected_permits: Mapping[int, tuple[bool, ...]] = field(default_factory=dict)  # netuid -> by uid, next epoch
    # netuid -> the epoch after next with the pending sets due before the next epoch applied,
    # where there are any; (hotkey, netuid) -> where that differs from the next epoch's
    # projection, for the validators exported.
    after_pending: Mapping[int, "AfterPending"] = field(default_factory=dict)
    permit_changes_after_pending: Mapping[tuple[str, int], "PermitChange"] = field(default_factory=dict)
    # netuid -> largest difference (rao) between the chain's own inherited alpha, inherited root
    # and stake weight (the metagraph runtime API) and ours, for the subnets checked at this block.
    metagraph_differences: Mapping[int, int] = field(default_factory=dict)
    # Change history follows the chain, not the export scope: the whole chain's
    # edges and pending sets, and every tracked validator (permit holders on
    # every subnet and watched hotkeys, whatever the netuid and stake filters).
    chain_edges: tuple[Edge, ...] = ()
    chain_pending: tuple[PendingChildren, ...] = ()
    tracked: tuple[ValidatorState, ...] = ()
    pending_effects: tuple[PendingEffect, ...] = ()  # of the exported pending sets
    watched: tuple[WatchedKey, ...] = ()
    # The chain's events since history last recorded, with each subnet's epoch blocks (None: not read).
    events: Optional["EventWindow"] = None
    # The subnets that exist (None: not known, a snapshot made by hand): history records a netuid
    # it holds state of and that is no longer among them as one dissolution.
    netuids: Optional[tuple[int, ...]] = None
    # Netuids being dissolved (exported: the netuid filter applies), see ChainRead.dissolving.
    dissolving: tuple[int, ...] = ()
    anomalies: tuple[Anomaly, ...] = ()  # by rule, then netuid (chain-wide first)
    # Weight-setting liveness and earnings of the validators exported (None: not read).
    activity: Optional["ActivitySnapshot"] = None


@dataclass(frozen=True, slots=True)
class ChainEvent:
    """One SubtensorModule event of ``System.Events``, its fields sorted by type (runtimes
    reorder and add fields: ``ChildKeyTakeSet`` gained a netuid), in declared order within each."""

    block: int
    index: int  # position among the block's events
    extrinsic: Optional[int]  # None: emitted by the block step (initialization, finalization)
    name: str  # the variant, e.g. "SetChildren"
    accounts: tuple[str, ...] = ()
    netuids: tuple[int, ...] = ()
    numbers: tuple[int, ...] = ()  # every other integer field (take, uid, cooldown block, amounts)
    children: tuple[Link, ...] = ()  # a Vec<(u64, AccountId)> field, if the event has one


@dataclass(frozen=True)
class EventWindow:
    """The chain's events of the blocks ``first``..``last`` (the blocks since history last recorded).

    Blocks before ``read_from`` were asked for but the endpoint no longer had their state
    (a pruning node keeps about 256 blocks): what changed there is known only as a net change.
    """

    first: int
    read_from: int
    last: int
    events: tuple[ChainEvent, ...] = ()
    times: Mapping[int, float] = field(default_factory=dict)  # block -> timestamp seconds, blocks read
    # netuid -> the subnet's epoch blocks in first..last (filled by the snapshot builder)
    epochs: Mapping[int, tuple[int, ...]] = field(default_factory=dict)
    take_floors: Mapping[int, int] = field(default_factory=dict)  # netuid -> the lowest effective take (u16)
    failed: Optional[str] = None  # the events could not be read (why): history waits for a later read

    @property
    def gap(self) -> Optional[tuple[int, int]]:
        return (self.first, self.read_from - 1) if self.read_from > self.first else None

    def time_of(self, block: int) -> float:
        """The block's timestamp if it was read, else one estimated from the last block's at 12 s a block."""
        if block in self.times:
            return self.times[block]
        return self.times.get(self.last, 0.0) - (self.last - block) * 12.0
