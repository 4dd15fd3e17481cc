"""Is the validator working and earning: weight-setting liveness and earnings panels (collectors
activity and earnings) for My validators, Validator detail and Network overview.

Blocks since the last weight set are each exporter's block minus its LastUpdate, the freshest
exporter kept (`promql.blocks_since_weights`), as the alerts compute them; past half the subnet's
activity cutoff the weights are stale (BittensorValidatorWeightsStale), past the cutoff the next
epoch marks the validator inactive and it earns no validator dividends there.
"""

from __future__ import annotations

from dashboards_src.board import detail_url, field
from dashboards_src.panels import Column, Query, Style, graph_panel, stat_panel, table_panel
from dashboards_src.promql import (
    ALIASES, CUTOFF, PICKED, WATCHED_PAIRS, blocks_since_weights, holding_permit, marked_inactive, of_watched_pairs,
    per_pair, select, share_of_cutoff, with_alias,
)

# Share of the cutoff: green, red past half (stale weights), dark red past it (inactive next epoch).
CUTOFF_STEPS = [(None, "green"), (0.5, "red"), (1, "dark-red")]
# Dividend share over stake share: red below BittensorValidatorDividendsBelowStakeShare's 0.8.
DIVIDEND_STEPS = [(None, "red"), (0.8, "green")]
INACTIVE_TEXT = {"0": ("active", "green"), "1": ("inactive", "dark-red")}


def _or_zero_where(expr: str, base: str, on: str) -> str:
    """``expr``, and 0 for each series of ``base`` (matched ``on``) it lacks: a flag that is absent when off."""
    return f"({expr} or on({on}) ({base} * 0))"


# -- My validators -------------------------------------------------------------------------------

def my_validators_table():
    def column(header: str, expr: str, style: Style = Style()) -> Column:
        return Column(header, with_alias(of_watched_pairs(expr)), style)

    since = blocks_since_weights(PICKED)
    dividends = per_pair("bittensor_validator_dividends_ratio")
    stake_share = per_pair("bittensor_validator_stake_share_ratio")
    return table_panel(
        "Weights and earnings by subnet",
        "Every watched hotkey picked on every subnet where it is in scope. Blocks since its last weight set (the "
        "stalest mechanism) and that as a share of the subnet's activity cutoff: past half BittensorValidatorWeightsStale "
        "fires (for a permit holder), past the cutoff the next epoch marks it inactive. Inactive: the chain marked it so "
        "at the subnet's last epoch (no validator dividends there). From the last epoch: vtrust (how far its weights "
        "agree with consensus), its share of the subnet's validator dividends against its share of the permit holders' "
        "stake weight (dividends / stake: 100 % earns as its stake weighs), its emission and its alpha and root "
        "dividends after its delegate take. Delegate take: its cut of its nominators' dividends on every subnet.",
        ["alias", "hotkey", "netuid"],
        [
            column("blocks since weights", since, Style(unit="none", decimals=0)),
            column("cutoff (blocks)", f"({WATCHED_PAIRS} * 0 + on(netuid) group_left() {CUTOFF})", Style(unit="none", decimals=0)),
            column("of cutoff", share_of_cutoff(since), Style(unit="percentunit", decimals=0, steps=CUTOFF_STEPS, cell=True)),
            column("inactive", _or_zero_where(marked_inactive(PICKED), WATCHED_PAIRS, "hotkey, netuid"),
                   Style(unit="none", mappings=INACTIVE_TEXT, cell=True)),
            column("vtrust", per_pair("bittensor_validator_trust_ratio"), Style(unit="percentunit", decimals=1)),
            column("dividend share", dividends, Style(unit="percentunit", decimals=2)),
            column("stake share", stake_share, Style(unit="percentunit", decimals=2)),
            column("dividends / stake", f"({dividends} / on(hotkey, netuid) ({stake_share} > 0))",
                   Style(unit="percentunit", decimals=0, steps=DIVIDEND_STEPS, cell=True)),
            column("emission (alpha)", per_pair("bittensor_validator_emission_alpha"), Style(unit="short")),
            column("alpha dividends", per_pair("bittensor_validator_alpha_dividends_alpha"), Style(unit="short")),
            column("root dividends (alpha)", per_pair("bittensor_validator_root_dividends_alpha"), Style(unit="short")),
            column("delegate take", f"({WATCHED_PAIRS} * 0 + on(hotkey) group_left() "
                                    f"max by (hotkey) ({select('bittensor_hotkey_delegate_take_ratio', PICKED)}))",
                   Style(unit="percentunit", decimals=1)),
        ],
        height=9, sort_by=("of cutoff", True),
        label_styles={"hotkey": Style(links=[("Validator detail", detail_url(field("hotkey"), field("netuid")))])},
    )


def my_validators_graphs() -> list:
    legend = "{{alias}} subnet {{netuid}}"
    permit_pairs = holding_permit(of_watched_pairs(blocks_since_weights(PICKED)), PICKED)
    share = f"({per_pair('bittensor_validator_dividends_ratio')} / on(hotkey, netuid) ({per_pair('bittensor_validator_stake_share_ratio')} > 0))"
    return [
        graph_panel("Weights: share of the activity cutoff",
                    "Blocks since each watched permit holder's last weight set over the subnet's activity cutoff. Past "
                    "50 % the weights are stale (BittensorValidatorWeightsStale, after 5 minutes); past 100 % the next "
                    "epoch marks it inactive (BittensorValidatorInactive). A weight set drops it to 0.",
                    Query(with_alias(share_of_cutoff(permit_pairs)), legend), width=8,
                    style=Style(unit="percentunit", steps=CUTOFF_STEPS), threshold_lines=True, minimum=0),
        graph_panel("Validator trust", "vtrust of each watched validator per subnet at its last epoch: how far its "
                    "weights agree with the subnet's consensus (BittensorValidatorTrustDropped: 20 % below its highest "
                    "of 90 minutes).",
                    Query(with_alias(of_watched_pairs(per_pair("bittensor_validator_trust_ratio"))), legend), width=8,
                    style=Style(unit="percentunit")),
        graph_panel("Dividend share over stake share",
                    "Each watched validator's share of the subnet's validator dividends over its share of the permit "
                    "holders' stake weight, at the last epoch: 100 % earns as its stake weighs; below 80 % for 4 hours "
                    "BittensorValidatorDividendsBelowStakeShare fires.",
                    Query(with_alias(of_watched_pairs(share)), legend), width=8,
                    style=Style(unit="percentunit", steps=DIVIDEND_STEPS), threshold_lines=True, minimum=0),
    ]


# -- Validator detail ----------------------------------------------------------------------------

HOTKEY, NETUID, CHILD = 'hotkey="$hotkey"', 'netuid="$netuid"', 'child_hotkey="$hotkey"'
_ONE = (HOTKEY, NETUID)


def _one(metric: str) -> str:
    return f"max({select(metric, *_ONE)})"


def detail_panels() -> list:
    cutoff = f"max({select('bittensor_subnet_activity_cutoff_blocks', NETUID)})"
    permit = _one("bittensor_validator_permit")
    return [
        graph_panel(
            "Blocks since last weight set",
            "Per mechanism: the block of the snapshot minus the uid's LastUpdate (each exporter's own, the freshest kept), "
            "with half the subnet's activity cutoff (past it BittensorValidatorWeightsStale fires, for a permit holder) "
            "and the cutoff (past it the next epoch marks the validator inactive: no validator dividends). A weight set "
            "drops it to 0.",
            [
                Query(blocks_since_weights(*_ONE, by="mechanism"), "mechanism {{mechanism}}"),
                Query(f"0.5 * {cutoff}", "half the cutoff"),
                Query(cutoff, "cutoff"),
            ],
            width=12, style=Style(unit="none", decimals=0), axis_label="blocks", minimum=0,
        ),
        graph_panel(
            "Inactive",
            "1 while the chain marks the uid inactive (Active false at the subnet's last epoch: its last weight set was "
            "more than the activity cutoff before the epoch), 0 while it is active.",
            Query(f"({_one('bittensor_validator_inactive')} or {permit} * 0)", "inactive"),
            width=4, style=Style(unit="none", decimals=0), minimum=0,
        ),
        graph_panel(
            "Validator trust",
            "vtrust at the subnet's last epoch: how far its weights agree with consensus. BittensorValidatorTrustDropped "
            "fires 20 % below its highest of the last 90 minutes.",
            Query(_one("bittensor_validator_trust_ratio"), "vtrust"),
            width=8, style=Style(unit="percentunit"), minimum=0,
        ),
        graph_panel(
            "Dividend share vs stake share",
            "At the subnet's last epoch: its share of the validator dividends (Dividends) and its share of the permit "
            "holders' stake weight (StakeWeight), what the dividend share is set against. Dividends below 80 % of the "
            "stake share for 4 hours: BittensorValidatorDividendsBelowStakeShare.",
            [
                Query(_one("bittensor_validator_dividends_ratio"), "dividend share"),
                Query(_one("bittensor_validator_stake_share_ratio"), "stake share"),
            ],
            width=10, style=Style(unit="percentunit"), minimum=0,
        ),
        graph_panel(
            "Emission and dividends per epoch",
            "At the subnet's last epoch, in alpha: its emission (incentive and dividends, before the parent/child split), "
            "its alpha dividends and its root dividends, both after its delegate take (AlphaDividendsPerSubnet, "
            "RootAlphaDividendsPerSubnet).",
            [
                Query(_one("bittensor_validator_emission_alpha"), "emission"),
                Query(_one("bittensor_validator_alpha_dividends_alpha"), "alpha dividends"),
                Query(_one("bittensor_validator_root_dividends_alpha"), "root dividends"),
            ],
            width=10, style=Style(unit="short"), axis_label="alpha", minimum=0,
        ),
        stat_panel(
            "Delegate take",
            "Its delegate take (Delegates): its cut of its nominators' dividends, on every subnet. "
            "BittensorDelegateTakeChanged fires for an hour after a change.",
            f"max({select('bittensor_hotkey_delegate_take_ratio', HOTKEY)})",
            width=4, height=8, style=Style(unit="percentunit", decimals=2), graph=True,
        ),
    ]


def _role_alias(expr: str, role: str) -> str:
    """``expr`` (by <role>_hotkey) with that hotkey's alias as <role>_alias; hotkeys without one keep their row."""
    aliases = (f'label_replace(label_replace({ALIASES}, "{role}_hotkey", "$1", "hotkey", "(.*)"), '
               f'"{role}_alias", "$1", "alias", "(.*)")')
    return f"(({expr}) * on({role}_hotkey) group_left({role}_alias) {aliases} or on({role}_hotkey) ({expr}))"


def _edge_table(title: str, description: str, role: str, this_side: str):
    """The estimated dividends of this validator's edges on the subnet, one row per ``role`` (parent or child)."""
    def edge(metric: str) -> str:
        return _role_alias(f"max by ({role}_hotkey) ({select(metric, this_side, NETUID)})", role)

    return table_panel(
        title, description, [f"{role}_hotkey", f"{role}_alias"],
        [
            Column("dividends for the parent's stake (alpha)", edge("bittensor_childkey_dividends_estimated_alpha")),
            Column("child's take kept (alpha)", edge("bittensor_childkey_take_estimated_alpha")),
        ],
        width=12, height=6, style=Style(unit="short"), sort_by=("dividends for the parent's stake (alpha)", True),
        renames={f"{role}_hotkey": role, f"{role}_alias": "alias"},
        label_styles={f"{role}_hotkey": Style(links=[("Validator detail", detail_url(field(role), "${netuid}"))])},
    )


ESTIMATE = ("An estimate: the stakes, proportions, takes and coldkeys are this block's, not the epoch's, the emission "
            "includes any incentive the child earned as a miner, and the burn (CKBurn, where parent and child have "
            "different coldkeys) is not taken off.")


def edge_earnings_tables() -> list:
    return [
        _edge_table(
            "What each parent's stake earns here (estimate)",
            "Of this validator's dividends at the subnet's last epoch, the part the chain routes to each parent for the "
            "stake it gives (before the take and the burn), and of that the childkey take this validator keeps. " + ESTIMATE,
            "parent", CHILD),
        _edge_table(
            "What its stake earns at each child (estimate)",
            "Of each child's dividends at the subnet's last epoch, the part the chain routes to this validator for the "
            "stake it gives (before the take and the burn), and of that the childkey take the child keeps. " + ESTIMATE,
            "child", 'parent_hotkey="$hotkey"'),
    ]


# -- Network overview ----------------------------------------------------------------------------

_SUBNETS = 'netuid=~"$netuid"'


def _network_since() -> str:
    """Permit holders in scope picked by subnet, blocks since their last weight set."""
    return holding_permit(blocks_since_weights(_SUBNETS), _SUBNETS)


def falling_behind_table():
    since = _network_since()
    behind = f"({share_of_cutoff(since)} > 0.5)"

    def column(header: str, expr: str, style: Style = Style()) -> Column:
        return Column(header, with_alias(f"({expr} and on(hotkey, netuid) {behind})"), style)

    return table_panel(
        "Falling behind",
        "Permit holders in scope whose last weight set is more than half their subnet's activity cutoff ago, stalest "
        "(as a share of the cutoff) first; past 100 % the next epoch marks them inactive, and those the last epoch "
        "marked inactive show it. The exporter serves these for every validator in scope that is falling behind "
        "(collector activity), not only the watched ones.",
        ["alias", "hotkey", "netuid"],
        [
            Column("of cutoff", with_alias(f"({share_of_cutoff(since)} > 0.5)"),
                   Style(unit="percentunit", decimals=0, steps=CUTOFF_STEPS, cell=True)),
            column("blocks since weights", since, Style(unit="none", decimals=0)),
            column("cutoff (blocks)", f"({since} * 0 + on(netuid) group_left() {CUTOFF})", Style(unit="none", decimals=0)),
            column("inactive", _or_zero_where(marked_inactive(_SUBNETS), since, "hotkey, netuid"),
                   Style(unit="none", mappings=INACTIVE_TEXT, cell=True)),
        ],
        width=14, height=8, sort_by=("of cutoff", True),
        label_styles={"hotkey": Style(links=[("Validator detail", detail_url(field("hotkey"), field("netuid")))])},
    )


def activity_by_subnet_table():
    subnets = f"max by (netuid) ({select('bittensor_subnet_max_validators', _SUBNETS)})"

    def per_subnet(expr: str) -> str:
        return f"(count by (netuid) ({expr}) or {subnets} * 0)"

    since = _network_since()
    return table_panel(
        "Activity by subnet",
        "Per subnet: the activity cutoff (blocks), the permit holders past half of it (weights stale) and the validators "
        "in scope the chain marked inactive at the subnet's last epoch.",
        ["netuid"],
        [
            Column("cutoff (blocks)", f"{CUTOFF} and on(netuid) {subnets}", Style(unit="none", decimals=0)),
            Column("falling behind", per_subnet(f"{share_of_cutoff(since)} > 0.5"),
                   Style(decimals=0, steps=[(None, "green"), (1, "red")], cell=True)),
            Column("inactive", per_subnet(marked_inactive(_SUBNETS)),
                   Style(decimals=0, steps=[(None, "green"), (1, "dark-red")], cell=True)),
        ],
        width=10, height=8, sort_by=("falling behind", True),
    )
