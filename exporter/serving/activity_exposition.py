"""Render the activity and earnings families of a snapshot (collectors activity, earnings, earnings_all).

Per-validator series are written in hotkey order (the same hotkey on many subnets, line
after line), which gzip folds into back-references: at mainnet scale a dense family costs
about 14 bytes a series compressed instead of 36 in subnet order.

    bittensor_validator_last_weights_block{hotkey="5F..",netuid="3",mechanism="0"} 4800123
    bittensor_validator_inactive{hotkey="5F..",netuid="3"} 1
    bittensor_subnet_activity_cutoff_blocks{netuid="3"} 5000
    bittensor_validator_trust_ratio{hotkey="5F..",netuid="3"} 0.9372
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

from exporter.snapshot.activity_model import ActivitySnapshot, ChildkeyEarning, ValidatorActivity
from exporter.snapshot.model import Snapshot
from exporter.snapshot.units import TAKE_DENOMINATOR, to_units

ESTIMATE = (" An estimate: the chain's split (coinbase/run_coinbase.rs get_parent_child_dividends_distribution) "
            "applied to the child's Emission of the last epoch at this block's stakes, links, takes and coldkeys.")

# (name, help, value of a validator's activity or None for no series); labels hotkey, netuid.
EARNINGS_FAMILIES: tuple[tuple[str, str, Callable[[ValidatorActivity], Optional[float]]], ...] = (
    ("bittensor_validator_blocks_since_weights",
     "Blocks from the uid's last weight set to the block read (the stalest mechanism's): bittensor_chain_block minus "
     "bittensor_validator_last_weights_block, for the validators of this collector.",
     lambda a: a.blocks_since_update),
    ("bittensor_validator_trust_ratio", "ValidatorTrust (0-1) of the uid at the subnet's last epoch: how far its weights agree with consensus.",
     lambda a: _ratio(a.validator_trust)),
    ("bittensor_validator_dividends_ratio", "Dividends (0-1): the uid's share of the subnet's validator dividends at the last epoch.",
     lambda a: _ratio(a.dividends)),
    ("bittensor_validator_stake_share_ratio",
     "The uid's share (0-1) of the permit holders' stake weight at the last epoch (StakeWeight): what its dividend share is set against.",
     lambda a: a.stake_share),
    ("bittensor_validator_emission_alpha", "Emission of the uid at the subnet's last epoch (incentive and dividends before the parent/child split), in alpha.",
     lambda a: None if a.emission is None else to_units(a.emission)),
    ("bittensor_validator_alpha_dividends_alpha",
     "AlphaDividendsPerSubnet: the hotkey's alpha dividends at the subnet's last epoch after its delegate take (its nominators' part), in alpha.",
     lambda a: to_units(a.alpha_dividends)),
)
# The root part of dividends: RootAlphaDividendsPerSubnet is alpha; the older runtimes' TaoDividendsPerSubnet, TAO.
ROOT_DIVIDENDS_FAMILIES = {
    "RootAlphaDividendsPerSubnet": (
        "bittensor_validator_root_dividends_alpha",
        "RootAlphaDividendsPerSubnet: the root-stake part of the hotkey's dividends at the subnet's last epoch, after its delegate take, in alpha."),
    "TaoDividendsPerSubnet": (
        "bittensor_validator_root_dividends_tao",
        "TaoDividendsPerSubnet (runtimes before RootAlphaDividendsPerSubnet): the root dividends paid to the hotkey on the subnet at the last epoch, in TAO."),
}


def _ratio(value: Optional[int]) -> Optional[float]:
    return None if value is None else value / TAKE_DENOMINATOR


def _hotkey_group(hotkey: str) -> str:
    return hotkey[:3]


def _by_hotkey(validators: Iterable[ValidatorActivity]) -> list[ValidatorActivity]:
    return sorted(validators, key=lambda a: (a.hotkey, a.netuid))


def _labels(a: Any) -> str:
    return f'hotkey="{a.hotkey}",netuid="{a.netuid}"'


def render_activity(w: Any, snapshot: Snapshot, collectors: frozenset) -> None:
    """The families of the enabled collectors, on ``w`` (exposition's chunk writer)."""
    activity = snapshot.activity
    if activity is None:
        return
    if "activity" in collectors:
        _liveness(w, activity)
    earning = collectors & {"earnings", "earnings_all"}
    if earning:
        every = "earnings_all" in earning
        watched = {i.hotkey for i in snapshot.identities if i.watched}
        chosen = [a for a in activity.validators if every or a.hotkey in watched]
        _earnings(w, activity, chosen, None if every else watched)


def _liveness(w: Any, activity: ActivitySnapshot) -> None:
    ordered = _by_hotkey(activity.validators)
    w.family(
        "bittensor_validator_last_weights_block",
        "LastUpdate: block of the uid's last weight set on the subnet, per mechanism (mechanism m of a subnet "
        "is the chain's row netuid + m x 4096); bittensor_chain_block minus it is the blocks since.",
        "gauge",
        ((_hotkey_group(a.hotkey), f'{_labels(a)},mechanism="{m}"', block)
         for a in ordered for m, block in enumerate(a.last_update) if block is not None),
        grouped=True,
    )
    w.family(
        "bittensor_validator_inactive",
        "1 where the chain marked the uid inactive at the subnet's last epoch (Active false: its last weight set "
        "was more than the activity cutoff before the epoch); absent where it is active.",
        "gauge",
        ((_hotkey_group(a.hotkey), _labels(a), 1) for a in ordered if a.active is False),
        grouped=True,
    )
    w.family(
        "bittensor_subnet_activity_cutoff_blocks",
        "Blocks without a weight set after which the subnet's epoch marks a validator inactive (ActivityCutoff, or "
        "max(1, ActivityCutoffFactorMilli x tempo / 1000) on runtimes with dynamic tempo).",
        "gauge",
        ((f'netuid="{n}"', blocks) for n, blocks in sorted(activity.cutoffs.items())),
    )


def _earnings(w: Any, activity: ActivitySnapshot, chosen: list[ValidatorActivity], watched: Optional[set]) -> None:
    ordered = _by_hotkey(chosen)
    families = list(EARNINGS_FAMILIES)
    root = ROOT_DIVIDENDS_FAMILIES.get(activity.root_dividends_item or "")
    if root is not None:
        families.append((*root, lambda a: None if a.root_dividends is None else to_units(a.root_dividends)))
    for name, help_text, value_of in families:
        w.family(name, help_text, "gauge",
                 ((_hotkey_group(a.hotkey), _labels(a), x) for a in ordered if (x := value_of(a)) is not None),
                 grouped=True)
    takes = {a.hotkey: a.delegate_take for a in ordered if a.delegate_take is not None}
    w.family(
        "bittensor_hotkey_delegate_take_ratio", "Delegate take (0-1) of the hotkey (Delegates): its cut of its nominators' dividends on every subnet.",
        "gauge",
        ((_hotkey_group(h), f'hotkey="{h}"', t / TAKE_DENOMINATOR) for h, t in sorted(takes.items())),
        grouped=True,
    )
    earnings = [e for e in activity.earnings if watched is None or e.child in watched or e.parent in watched]
    earnings.sort(key=lambda e: (e.netuid, e.child, e.parent))
    for name, help_text, value_of in (
        ("bittensor_childkey_dividends_estimated_alpha",
         "Of the child's dividends at the subnet's last epoch, the alpha the chain routes to this parent for the stake it gives, "
         "before the child's take and the burn.", lambda e: e.parent_share),
        ("bittensor_childkey_take_estimated_alpha",
         "Of that, the alpha the child keeps as its childkey take (0 when parent and child share a coldkey).", lambda e: e.child_take),
    ):
        w.family(name, help_text + ESTIMATE, "gauge", ((e.netuid, _edge_labels(e), to_units(value_of(e))) for e in earnings), grouped=True)


def _edge_labels(e: ChildkeyEarning) -> str:
    return f'parent_hotkey="{e.parent}",child_hotkey="{e.child}",netuid="{e.netuid}"'
