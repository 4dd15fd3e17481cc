"""Render the activity and earnings families of a snapshot (collectors activity, activity_all, earnings,
earnings_all).

What a scrape can afford decides who gets which series: at mainnet scale a dense family over
every validator costs ~8,000 series and ~85 kB gzip, more than the default network mode has
left. So by default the liveness series cover the watched hotkeys and every validator that is
stale (past half its subnet's activity cutoff) or marked inactive: a network-wide list of who
is falling behind, in a few hundred series; the earnings series cover the watched hotkeys.
``activity_all`` and ``earnings_all`` extend them to every validator in scope.

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

from exporter.serving.metric_defs import METRICS
from exporter.snapshot.activity_model import ActivitySnapshot, ChildkeyEarning, ValidatorActivity
from exporter.snapshot.model import Snapshot
from exporter.snapshot.units import TAKE_DENOMINATOR, to_units

# The families of this module, as rows of the metric table (exporter/serving/metric_defs.py).
ACTIVITY_METRICS = tuple((m.name, m.type, m.labels, m.help, m.collector) for m in METRICS
                         if m.collector in ("activity", "earnings"))

# Per validator: (family, its value or None for no series).
EARNINGS_VALUES: tuple[tuple[str, Callable[[ValidatorActivity], Optional[float]]], ...] = (
    ("bittensor_validator_trust_ratio", lambda a: _ratio(a.validator_trust)),
    ("bittensor_validator_dividends_ratio", lambda a: _ratio(a.dividends)),
    ("bittensor_validator_stake_share_ratio", lambda a: a.stake_share),
    ("bittensor_validator_emission_alpha", lambda a: None if a.emission is None else to_units(a.emission)),
    ("bittensor_validator_alpha_dividends_alpha", lambda a: to_units(a.alpha_dividends)),
)
# The root part of dividends in the unit of the item read: RootAlphaDividendsPerSubnet is alpha,
# the older runtimes' TaoDividendsPerSubnet TAO.
ROOT_DIVIDENDS_FAMILY = {
    "RootAlphaDividendsPerSubnet": "bittensor_validator_root_dividends_alpha",
    "TaoDividendsPerSubnet": "bittensor_validator_root_dividends_tao",
}


def _ratio(value: Optional[int]) -> Optional[float]:
    return None if value is None else value / TAKE_DENOMINATOR


def _hotkey_group(hotkey: str) -> str:
    return hotkey[:3]


def _by_hotkey(validators: Iterable[ValidatorActivity]) -> list[ValidatorActivity]:
    return sorted(validators, key=lambda a: (a.hotkey, a.netuid))


def _labels(a: Any) -> str:
    return f'hotkey="{a.hotkey}",netuid="{a.netuid}"'


def _family(w: Any, name: str, samples: Iterable[tuple], grouped: bool = True) -> None:
    """The family ``name`` of ``ACTIVITY_METRICS`` from its samples, on the exposition's writer."""
    w.family(name, samples, grouped=grouped)


def render_activity(w: Any, snapshot: Snapshot, collectors: frozenset) -> None:
    """The families of the enabled collectors, on ``w`` (exposition's chunk writer)."""
    activity = snapshot.activity
    if activity is None:
        return
    watched = {i.hotkey for i in snapshot.identities if i.watched}
    if collectors & {"activity", "activity_all"}:
        every = "activity_all" in collectors
        _liveness(w, activity, [a for a in activity.validators if every or a.hotkey in watched or _falling_behind(activity, a)])
    earning = collectors & {"earnings", "earnings_all"}
    if earning:
        every = "earnings_all" in earning
        chosen = [a for a in activity.validators if every or a.hotkey in watched]
        _earnings(w, activity, chosen, None if every else watched)


def _falling_behind(activity: ActivitySnapshot, a: ValidatorActivity) -> bool:
    """Past half its subnet's activity cutoff, or marked inactive at the last epoch."""
    cutoff = activity.cutoffs.get(a.netuid)  # None: the runtime has no cutoff item (nothing to be past)
    return a.active is False or (cutoff is not None and 2 * a.blocks_since_update > cutoff)


def _liveness(w: Any, activity: ActivitySnapshot, chosen: list[ValidatorActivity]) -> None:
    ordered = _by_hotkey(chosen)
    _family(w, "bittensor_validator_last_weights_block",
            ((_hotkey_group(a.hotkey), f'{_labels(a)},mechanism="{m}"', block)
             for a in ordered for m, block in enumerate(a.last_update) if block is not None))
    _family(w, "bittensor_validator_inactive",
            ((_hotkey_group(a.hotkey), _labels(a), 1) for a in ordered if a.active is False))
    _family(w, "bittensor_subnet_activity_cutoff_blocks",
            ((f'netuid="{n}"', blocks) for n, blocks in sorted(activity.cutoffs.items())), grouped=False)


def _earnings(w: Any, activity: ActivitySnapshot, chosen: list[ValidatorActivity], watched: Optional[set]) -> None:
    ordered = _by_hotkey(chosen)
    values = list(EARNINGS_VALUES)
    root = ROOT_DIVIDENDS_FAMILY.get(activity.root_dividends_item or "")
    if root is not None:
        values.append((root, lambda a: None if a.root_dividends is None else to_units(a.root_dividends)))
    for name, value_of in values:
        _family(w, name, ((_hotkey_group(a.hotkey), _labels(a), x) for a in ordered if (x := value_of(a)) is not None))
    takes = {a.hotkey: a.delegate_take for a in ordered if a.delegate_take is not None}
    _family(w, "bittensor_hotkey_delegate_take_ratio",
            ((_hotkey_group(h), f'hotkey="{h}"', t / TAKE_DENOMINATOR) for h, t in sorted(takes.items())))
    earnings = [e for e in activity.earnings if watched is None or e.child in watched or e.parent in watched]
    earnings.sort(key=lambda e: (e.netuid, e.child, e.parent))
    _family(w, "bittensor_childkey_dividends_estimated_alpha",
            ((e.netuid, _edge_labels(e), to_units(e.parent_share)) for e in earnings))
    _family(w, "bittensor_childkey_take_estimated_alpha",
            ((e.netuid, _edge_labels(e), to_units(e.child_take)) for e in earnings))


def _edge_labels(e: ChildkeyEarning) -> str:
    return f'parent_hotkey="{e.parent}",child_hotkey="{e.child}",netuid="{e.netuid}"'
