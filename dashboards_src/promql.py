"""PromQL pieces the dashboards share: selectors of the exporters picked, the watched validators
picked, aliases, what keeps a permit, and the alerts that fire.

Two exporters scraped under one job (an HA pair) give two copies of every series: each piece
reduces with ``max by (...)`` before anything is counted or summed, so a pair counts once.
"""

from __future__ import annotations

INSTANCE = 'instance=~"$instance"'
PICKED = 'hotkey=~"$hotkey"'
CHILD_PICKED = 'child_hotkey=~"$hotkey"'
PARENT_PICKED = 'parent_hotkey=~"$hotkey"'
# Data older than this is stale: BittensorExporterDataStale's limit.
STALE_SECONDS = 600
# A change this recent marks a validator "changed recently": the change alerts' window.
RECENT_SECONDS = 3600


def select(metric: str, *matchers: str) -> str:
    """``metric{matchers..., instance=~"$instance"}``: the series of the exporters picked."""
    return f"{metric}{{{', '.join([*matchers, INSTANCE])}}}"


def per_pair(metric: str, *matchers: str) -> str:
    """A per-validator family, one series per (hotkey, netuid) of the hotkeys picked."""
    return f"max by (hotkey, netuid) ({select(metric, PICKED, *matchers)})"


WATCHED_TRUE = 'watched="true"'
# The watched hotkeys picked (value 1), by hotkey.
WATCHED = f"max by (hotkey) ({select('bittensor_validator_info', WATCHED_TRUE, PICKED)})"
# Every watched hotkey picked, found on the chain or not (value 1 found, 0 not), with its alias.
WATCH_LIST = f"max by (hotkey, alias) ({select('bittensor_watched_hotkey_found', PICKED)})"
# One alias per hotkey (an HA pair's configs might disagree): for `* on(hotkey) group_left(alias)`.
ALIASES = f"topk by (hotkey) (1, max by (hotkey, alias) ({select('bittensor_validator_info')}))"


def watched(expr: str) -> str:
    """``expr`` (with a hotkey label) for the watched hotkeys picked only."""
    return f"({expr} and on(hotkey) {WATCHED})"


# The watched (hotkey, subnet) pairs in scope, valued by stake weight.
WATCHED_PAIRS = watched(per_pair("bittensor_validator_stake_weight_alpha"))


def of_watched_pairs(expr: str) -> str:
    return f"({expr} and on(hotkey, netuid) {WATCHED_PAIRS})"


def with_alias(expr: str) -> str:
    """``expr`` with each hotkey's alias as a label."""
    return f"{expr} * on(hotkey) group_left(alias) {ALIASES}"


def or_zero(expr: str, base: str) -> str:
    """``expr``, and 0 for each series of ``base`` it lacks (matched on ``base``'s labels)."""
    return f"({expr} or {base} * 0)"


# What a permit holder's stake weight must beat at the next epoch, by subnet: the strongest uid
# without a permit on a full subnet (permits = k), and the chain's StakeThreshold everywhere.
PERMIT_BOUND = (
    "max by (netuid) ("
    f"label_replace(max by (netuid) ({select('bittensor_subnet_top_contender_stake_weight_alpha')}) and on(netuid) "
    f"(max by (netuid) ({select('bittensor_subnet_validator_permits')}) >= on(netuid) "
    f"max by (netuid) ({select('bittensor_subnet_max_validators')})), " '"bound", "top contender", "", "") or '
    f"label_replace(max by (netuid) ({select('bittensor_subnet_max_validators')}) * 0 + "
    f"scalar(max({select('bittensor_chain_stake_threshold_alpha')})), " '"bound", "stake threshold", "", ""))'
)
# Watched permit holders within 5 % of (or below) that bound: BittensorValidatorPermitAtRisk's rule.
AT_RISK = (f"(({WATCHED_PAIRS} and on(hotkey, netuid) ({per_pair('bittensor_validator_permit')} == 1)) "
           f"< on(netuid) group_left() (1.05 * {PERMIT_BOUND}))")
# Watched pairs the next epoch takes the permit from, by the chain's rule at this block.
LOSS_NEXT_EPOCH = watched(f"{per_pair('bittensor_validator_projected_permit')} == 0")
# Watched pairs that pending child sets take the permit from at the epoch after next (with the
# parent whose set is the reason).
LOSS_AFTER_PENDING = watched(
    f"max by (hotkey, netuid, parent_hotkey, reason) ({select('bittensor_validator_projected_permit_after_pending', PICKED)}) == 0")
# Pending child sets that cut or drop a watched child (labels parent_hotkey, child_hotkey, netuid, hotkey).
PENDING_CUTS = watched(
    f"label_replace(max by (parent_hotkey, child_hotkey, netuid) "
    f"({select('bittensor_childkey_pending_proportion_change_ratio', CHILD_PICKED)}) < 0, "
    '"hotkey", "$1", "child_hotkey", "(.*)")')
# Pending revocations of all its children scheduled by a watched parent (labels parent_hotkey, netuid, hotkey).
PENDING_REVOCATIONS = watched(
    f"label_replace(max by (parent_hotkey, netuid) "
    f"({select('bittensor_childkey_pending_children', PARENT_PICKED)}) == 0, "
    '"hotkey", "$1", "parent_hotkey", "(.*)")')
# Takes that differ from scope.watch's expected_take (BittensorChildkeyTakeUnexpected, without its 5 minutes).
TAKE_UNEXPECTED = watched(
    f"abs({per_pair('bittensor_validator_childkey_take_ratio')} - on(hotkey, netuid) "
    f"{per_pair('bittensor_validator_expected_childkey_take_ratio')}) > 0.0001")

# Alerts: the rules aggregate per-validator alerts over the exporters (no instance label), while
# the exporter alerts keep theirs: `instance=~"$instance|"` reads both.
ALERT_INSTANCE = 'instance=~"$instance|"'
FIRING = ('alertstate="firing"', 'alertname=~"Bittensor.+"')
CRITICAL, WARNING, SERIOUS = '"critical"', '"warning"', '"warning|critical"'
ALERT_LABELS = "alertname, severity, hotkey, parent_hotkey, child_hotkey, netuid, instance"


def _alerts(*matchers: str) -> str:
    return f"ALERTS{{{', '.join([*FIRING, *matchers, ALERT_INSTANCE])}}}"


def firing_alerts(*matchers: str) -> str:
    """Firing Bittensor alerts shown: those about the watched validators picked, labelled `hotkey` by
    the validator they are about (the hotkey, else the child of a pending set or edge, else the
    parent), and those about no validator (an exporter, a subnet, the chain)."""
    about = f'label_replace(label_replace({_alerts(*matchers)}, "hotkey", "$1", "parent_hotkey", "(.+)"), "hotkey", "$1", "child_hotkey", "(.+)")'
    nobody = _alerts(*matchers, 'hotkey=""', 'parent_hotkey=""', 'child_hotkey=""')
    return f"({watched(about)} or {nobody})"


# Every firing alert shown, once, valued by severity: 3 critical, 2 warning, 1 info (or none).
ALERTS_BY_SEVERITY = (f"max by ({ALERT_LABELS}) ({firing_alerts('severity=' + CRITICAL)} * 3 "
                      f"or {firing_alerts('severity=' + WARNING)} * 2 or {firing_alerts()})")
# Firing warnings and critical alerts, by the validator they are about.
SERIOUS_ALERTS = f"max by ({ALERT_LABELS}) ({firing_alerts('severity=~' + SERIOUS)})"


def events_in(counter: str, window: str) -> str:
    """Events a change counter (``*_changes_total`` selector) counted in ``window``, the first one
    included: a counter series is born at 1 with its first event (none is made up at 0), so
    increase() alone never shows it. A series younger than the window counts all it has."""
    return f"(increase({counter}[{window}]) and {counter} offset {window} or {counter})"


# -- weight-setting liveness and earnings (collectors activity and earnings) ---------------------

def blocks_since_weights(*matchers: str, by: str = "hotkey, netuid") -> str:
    """Blocks since the last weight set of the validators ``matchers`` pick, by ``by``: each exporter's
    block minus its LastUpdate, then the freshest exporter (an exporter a few blocks behind never
    makes a validator look staler than it is: BittensorValidatorWeightsStale's rule), then the
    stalest mechanism (unless ``by`` keeps the mechanism)."""
    per_exporter = (f"{select('bittensor_chain_block')} - on(instance, job) group_right() "
                    f"{select('bittensor_validator_last_weights_block', *matchers)}")
    return f"max by ({by}) (min by (hotkey, netuid, mechanism) ({per_exporter}))"


# The activity cutoff of each subnet, in blocks.
CUTOFF = f"max by (netuid) ({select('bittensor_subnet_activity_cutoff_blocks')})"


def holding_permit(expr: str, *matchers: str) -> str:
    """``expr`` (by hotkey, netuid) where the validator holds a permit: the alerts' scope (a uid
    without one earns no validator dividends, stale or not)."""
    return f"({expr} and on(hotkey, netuid) (max by (hotkey, netuid) ({select('bittensor_validator_permit', *matchers)}) == 1))"


def share_of_cutoff(blocks: str) -> str:
    """Blocks since the last weight set as a share of the subnet's cutoff: past 0.5 the weights are
    stale (warning), past 1 the next epoch marks the validator inactive."""
    return f"({blocks} / on(netuid) group_left() {CUTOFF})"


def marked_inactive(*matchers: str) -> str:
    """Pairs the chain marked inactive at the subnet's last epoch (the series exists only then)."""
    return f"(max by (hotkey, netuid) ({select('bittensor_validator_inactive', *matchers)}) == 1)"


# Watched permit holders picked, blocks since their last weight set (stalest mechanism).
WATCHED_BLOCKS_SINCE_WEIGHTS = holding_permit(watched(blocks_since_weights(PICKED)), PICKED)
# Past half the cutoff: BittensorValidatorWeightsStale's rule without its 5 minutes.
WEIGHTS_STALE = f"({share_of_cutoff(WATCHED_BLOCKS_SINCE_WEIGHTS)} > 0.5)"
# Past the cutoff (the next epoch marks it inactive) or marked inactive: BittensorValidatorInactive's
# rule without its 2 minutes. It earns no validator dividends there.
INACTIVE = (f"({share_of_cutoff(WATCHED_BLOCKS_SINCE_WEIGHTS)} > 1 or "
            f"{holding_permit(watched(marked_inactive(PICKED)), PICKED)})")
