"""What the chain says about validators doing their job and earning, as read and as built.

``ActivityRead`` holds the raw storage values (one read, one block); ``ActivitySnapshot`` the
per-validator numbers the exposition and history use. Both immutable, as the rest of the
snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

# LastUpdate and the other per-mechanism vectors are keyed by netuid + mechanism x 4096
# (subnets/mechanism.rs get_mechanism_storage_index, GLOBAL_MAX_SUBNET_COUNT).
MECHANISM_STRIDE = 4096


@dataclass(frozen=True)
class ActivityRead:
    """Raw values at the read's block: per-uid vectors by netuid, dividends by (netuid, hotkey)."""

    cutoff_item: str  # "ActivityCutoffFactorMilli" (newer runtimes) or "ActivityCutoff"
    cutoffs: Mapping[int, int]  # netuid -> the raw value of cutoff_item
    mechanisms: Mapping[int, int]  # netuid -> MechanismCountCurrent (1 where the runtime lacks it)
    last_update: Mapping[int, tuple[int, ...]]  # storage index (netuid + mechanism x 4096) -> LastUpdate
    active: Mapping[int, tuple[bool, ...]]
    validator_trust: Mapping[int, tuple[int, ...]]  # u16 / 65535
    dividends: Mapping[int, tuple[int, ...]]  # u16 / 65535
    emission: Mapping[int, tuple[int, ...]]  # alpha rao
    stake_weight: Mapping[int, tuple[int, ...]]  # StakeWeight, u16 / 65535, last epoch
    alpha_dividends: Mapping[tuple[int, str], int]  # AlphaDividendsPerSubnet, alpha rao
    root_dividends: Mapping[tuple[int, str], int]  # RootAlphaDividendsPerSubnet or TaoDividendsPerSubnet
    root_dividends_item: Optional[str]  # which of the two the runtime has (None: neither)
    delegate_takes: Mapping[str, int]  # Delegates, u16 / 65535
    ck_burn: int  # CKBurn, u64 fraction of u64::MAX (0 where the runtime lacks it)


@dataclass(frozen=True, slots=True)
class ValidatorActivity:
    """One validator in scope (hotkey, netuid) with a uid: the chain's values at its uid."""

    hotkey: str
    netuid: int
    uid: int
    last_update: tuple[Optional[int], ...]  # by mechanism: LastUpdate, the block of the last weight set (None: no entry)
    blocks_since_update: int  # since the stalest mechanism's last weight set
    active: Optional[bool]  # None: the Active vector has no entry for the uid
    validator_trust: Optional[int]  # u16
    dividends: Optional[int]  # u16
    emission: Optional[int]  # alpha rao
    stake_share: Optional[float]  # StakeWeight[uid] / sum over permit holders, last epoch
    alpha_dividends: int  # alpha rao
    root_dividends: Optional[int]  # alpha rao; None: the runtime has no such item
    delegate_take: Optional[int]  # u16; None where the hotkey is not a delegate


@dataclass(frozen=True, slots=True)
class ChildkeyEarning:
    """Estimate for one parent -> child edge: of the child's dividends at the last epoch
    (its ``Emission``), the part the chain routes to the parent for the stake it gives, and
    the childkey take the child keeps from that part (``get_parent_child_dividends_distribution``)."""

    parent: str
    child: str
    netuid: int
    parent_share: float  # alpha rao attributable to the parent's stake, before take and burn
    child_take: float  # alpha rao the child keeps of it (0 when both have one coldkey)
    burned: float  # alpha rao burnt (CKBurn) of it


@dataclass(frozen=True)
class ActivitySnapshot:
    block: int
    cutoffs: Mapping[int, int]  # netuid -> activity cutoff in blocks, as the runtime computes it
    mechanisms: Mapping[int, int]
    validators: tuple[ValidatorActivity, ...]  # in the snapshot's order
    earnings: tuple[ChildkeyEarning, ...] = ()  # edges into validators in scope
    watched: frozenset = frozenset()  # hotkeys on the watch list
    # (netuid, uid) -> hotkey of the uids history remembers (the tracked validators' uids),
    # so a uid taken by a new hotkey is seen.
    uid_hotkeys: Mapping[tuple[int, int], str] = field(default_factory=dict)
    tracked_active: Mapping[tuple[str, int], bool] = field(default_factory=dict)
    tracked_takes: Mapping[str, int] = field(default_factory=dict)
    # Where the root part of dividends was read: RootAlphaDividendsPerSubnet (alpha), or in older
    # runtimes TaoDividendsPerSubnet (TAO); None: neither.
    root_dividends_item: Optional[str] = None
