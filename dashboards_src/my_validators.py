"""Bittensor / My validators: "am I OK" at a glance, then the detail by subnet.

The top of the page, without scrolling: six counts, the status of each watched hotkey (one row
per hotkey however many subnets it is on, with a link to its detail), the alerts firing, the
permit-loss projections and the last changes of every kind (`status`). Below: every watched
(hotkey, subnet) pair, its weight setting and earnings (`liveness`), stake and permit margin over
time, the pending child sets, the next epochs.
Every panel reads the watched hotkeys picked (`$hotkey`, watched keys only), never the network.
"""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as models

from dashboards_src import chain_state, liveness, status
from dashboards_src.board import Board, detail_url, field, link, query_variable
from dashboards_src.panels import Column, Query, Style, graph_panel, table_panel
from dashboards_src.promql import (
    ALIASES, CHILD_PICKED, PARENT_PICKED, PERMIT_BOUND, PICKED, WATCHED, WATCHED_PAIRS, WATCHED_TRUE, of_watched_pairs,
    per_pair, select, with_alias,
)

DETAIL = "bittensor-validator-detail"
HOTKEY_PICKER = query_variable(
    "hotkey", "Validator",
    f"query_result(max by (hotkey, alias) ({select('bittensor_validator_info', WATCHED_TRUE)}))",
    description="Watched hotkeys by alias (scope.watch).",
    regex='/(?:alias="(?<text>[^"]+)",)?hotkey="(?<value>[^"]+)"/', sort=models.VariableSort.ALPHABETICAL_ASC,
    multi=True, all_value=".*",
)
MARGIN = f"({WATCHED_PAIRS} - on(netuid) group_left() {PERMIT_BOUND})"
CHAIN_BLOCK = f"max({select('bittensor_chain_block')})"
NEXT_EPOCH = f"max by (netuid) ({select('bittensor_subnet_next_epoch_block')})"


def _pair_column(header: str, expr: str, style: Style = Style(), zero: bool = False) -> Column:
    """A column of the by-subnet table: ``expr`` (by hotkey, netuid) for the watched pairs, with alias;
    ``zero``: 0 where ``expr`` has no series (counts)."""
    value = of_watched_pairs(expr)
    if zero:
        value = f"({value} or on(hotkey, netuid) ({WATCHED_PAIRS} * 0))"
    return Column(header, with_alias(value), style)


def _edges_to_pairs(expr: str, role: str) -> str:
    """Edge series counted per (hotkey, netuid), the hotkey being the edge's ``role`` (child or parent)."""
    return f'count by (hotkey, netuid) (label_replace({expr}, "hotkey", "$1", "{role}_hotkey", "(.*)"))'


YES_NO = {"0": ("no", "red"), "1": ("yes", "green")}
RED_FROM_1 = [(None, "green"), (1, "red")]


def by_subnet_table():
    proportions = f"max by (parent_hotkey, child_hotkey, netuid) ({select('bittensor_childkey_proportion_ratio', CHILD_PICKED)})"
    cuts = f"max by (parent_hotkey, child_hotkey, netuid) ({select('bittensor_childkey_pending_proportion_change_ratio', CHILD_PICKED)}) < 0"
    revocations = f"max by (parent_hotkey, netuid) ({select('bittensor_childkey_pending_children', PARENT_PICKED)}) == 0"
    projected = per_pair("bittensor_validator_projected_permit")
    permit = per_pair("bittensor_validator_permit")
    return table_panel(
        "My validators by subnet",
        "Every watched hotkey picked on every subnet where it is in scope (pick one hotkey above for a validator on "
        "many subnets). Permit margin: stake weight minus the larger of StakeThreshold and, on a full subnet, the "
        "strongest uid without a permit (below 0 the permit goes at the next epoch). Take vs the expected take of "
        "scope.watch. Parents and the alpha inherited from them. Pending cuts: child sets of its parents that cut or "
        "drop it; pending revocation: it scheduled the removal of all its children. Last change: the newest change "
        "recorded (history). Permit at next epoch: what the next epoch gives by the chain's rule at this block's stake "
        "weights; permit after pending sets: the epoch after, once the pending child sets due before the next epoch "
        "have applied; next epoch in: blocks left x 12 s. Unusual chain state: entries of a state the chain's write "
        "paths would not make on its subnet or chain-wide (which ones: Network overview, row Chain state; "
        "docs/chain-states.md), 0 normally. Click a hotkey for its detail.",
        ["alias", "hotkey", "netuid"],
        [
            _pair_column("stake weight (alpha)", per_pair("bittensor_validator_stake_weight_alpha")),
            _pair_column("permit", permit, Style(unit="none", decimals=0, mappings=YES_NO, cell=True)),
            _pair_column("permit margin (alpha)", MARGIN, Style(unit="short", steps=[(None, "red"), (0, "green")], cell=True)),
            _pair_column("take", per_pair("bittensor_validator_childkey_take_ratio"), Style(unit="percentunit")),
            _pair_column("expected take", per_pair("bittensor_validator_expected_childkey_take_ratio"), Style(unit="percentunit")),
            _pair_column("parents", _edges_to_pairs(proportions, "child"), Style(unit="none", decimals=0), zero=True),
            _pair_column("from parents (alpha)", per_pair("bittensor_validator_stake_from_parents_alpha"), zero=True),
            _pair_column("pending cuts", _edges_to_pairs(cuts, "child"), Style(unit="none", decimals=0, steps=RED_FROM_1, cell=True), zero=True),
            _pair_column("pending revocation", _edges_to_pairs(revocations, "parent"),
                         Style(unit="none", decimals=0, steps=RED_FROM_1, cell=True), zero=True),
            _pair_column("last change", f"max by (hotkey, netuid) ({select('bittensor_validator_last_change_timestamp_seconds', PICKED)}) * 1000",
                         Style(unit="dateTimeFromNow")),
            _pair_column("permit at next epoch", f"({projected} or on(hotkey, netuid) {permit})",
                         Style(unit="none", decimals=0, mappings=YES_NO, cell=True)),
            _pair_column("permit after pending sets",
                         f"(max by (hotkey, netuid) ({select('bittensor_validator_projected_permit_after_pending', PICKED)}) "
                         f"or on(hotkey, netuid) {projected} or on(hotkey, netuid) {permit})",
                         Style(unit="none", decimals=0, mappings=YES_NO, cell=True)),
            _pair_column("next epoch in", f"({WATCHED_PAIRS} * 0 + on(netuid) group_left() ({NEXT_EPOCH} - on() group_left() {CHAIN_BLOCK}) * 12)",
                         Style(unit="s")),
            _pair_column("unusual chain state", chain_state.on_watched_subnets(),
                         Style(unit="none", decimals=0, steps=[(None, "green"), (1, "orange")], cell=True)),
        ],
        height=9, style=Style(unit="short"), sort_by=("alias", False),
        label_styles={"hotkey": Style(links=[("Validator detail", detail_url(field("hotkey"), field("netuid")))])},
    )


def _as_role(expr: str, role: str) -> str:
    """A by-hotkey series relabelled as the ``role`` (child or parent) of an edge: hotkey -> <role>_hotkey,
    alias -> <role>_alias."""
    return (f'label_replace(label_replace({expr}, "{role}_hotkey", "$1", "hotkey", "(.*)"), '
            f'"{role}_alias", "$1", "alias", "(.*)")')


def _watched_as(role: str) -> str:
    return f'label_replace({WATCHED}, "{role}_hotkey", "$1", "hotkey", "(.*)")'


def pending_tables():
    change = (f"(max by (parent_hotkey, child_hotkey, netuid) ({select('bittensor_childkey_pending_proportion_change_ratio', CHILD_PICKED)}) "
              f"and on(child_hotkey) {_watched_as('child')}) * on(child_hotkey) group_left(child_alias) {_as_role(ALIASES, 'child')}")
    cooldown = f"max by (parent_hotkey, netuid) ({select('bittensor_childkey_pending_cooldown_block')})"

    def with_parent_alias(expr: str) -> str:
        # parents without an alias (not in scope) keep their row
        return (f"({expr} * on(parent_hotkey) group_left(parent_alias) {_as_role(ALIASES, 'parent')} "
                f"or on(parent_hotkey, child_hotkey, netuid, child_alias) {expr})")

    applies = f"({change}) * 0 + on(parent_hotkey, netuid) group_left() {cooldown}"
    own = f"and on(parent_hotkey) {_watched_as('parent')}"
    own_alias = f"* on(parent_hotkey) group_left(parent_alias) {_as_role(ALIASES, 'parent')}"
    own_cooldown = f"max by (parent_hotkey, netuid) ({select('bittensor_childkey_pending_cooldown_block', PARENT_PICKED)})"
    parent_link = Style(links=[("Validator detail", detail_url(field("parent"), field("netuid")))])
    return [
        table_panel(
            "Pending child sets that change my validators",
            "Child sets scheduled by a parent that change the proportion of a watched validator when they apply: "
            "pending minus current proportion (negative: cut; minus the current proportion: dropped; positive: raised "
            "or added), and the block after which the set applies (at the subnet's first epoch after it). The parent "
            "can still replace the set before then.",
            ["child_alias", "child_hotkey", "netuid", "parent_hotkey", "parent_alias"],
            [
                Column("change", with_parent_alias(f"({change})")),
                Column("applies after block", with_parent_alias(f"({applies})"), Style(unit="none", decimals=0)),
                Column("blocks to go", with_parent_alias(f"(({applies}) - scalar({CHAIN_BLOCK}))"), Style(unit="none", decimals=0)),
            ],
            width=14, style=Style(unit="percentunit"), sort_by=("change", False),
            renames={"child_alias": "validator", "child_hotkey": "hotkey", "parent_hotkey": "parent", "parent_alias": "parent alias"},
            label_styles={"child_hotkey": Style(links=[("Validator detail", detail_url(field("hotkey"), field("netuid")))]),
                          "parent_hotkey": parent_link},
        ),
        table_panel(
            "Pending child sets of my validators",
            "Child sets a watched hotkey scheduled as a parent: how many children the set has (0: the revocation of all "
            "its children) and the block after which it applies.",
            ["parent_alias", "parent_hotkey", "netuid"],
            [
                Column("children", f"(max by (parent_hotkey, netuid) ({select('bittensor_childkey_pending_children', PARENT_PICKED)}) {own}) {own_alias}",
                       Style(mappings={"0": ("0 (revocation)", "red")}, cell=True)),
                Column("applies after block", f"({own_cooldown} {own}) {own_alias}"),
                Column("blocks to go", f"(({own_cooldown} {own}) - scalar({CHAIN_BLOCK})) {own_alias}"),
            ],
            width=10, style=Style(unit="none", decimals=0), sort_by=("children", False),
            renames={"parent_alias": "validator", "parent_hotkey": "hotkey"},
            label_styles={"parent_hotkey": Style(links=[("Validator detail", detail_url(field("hotkey"), field("netuid")))])},
        ),
    ]


def next_epochs_table():
    subnets = f"max by (netuid) ({WATCHED_PAIRS})"
    return table_panel(
        "Next epochs of my subnets",
        "Each subnet a watched validator is on: the next epoch's block and the time left (blocks x 12 s), and where "
        "pending child sets change a permit, the epoch after next, the first that counts them.",
        ["netuid"],
        [
            Column("next epoch (block)", f"{NEXT_EPOCH} and on(netuid) {subnets}", Style(decimals=0)),
            Column("next epoch in", f"({NEXT_EPOCH} - on() group_left() {CHAIN_BLOCK}) * 12 and on(netuid) {subnets}", Style(unit="s")),
            Column("epoch after next, with pending sets (block)",
                   f"max by (netuid) ({select('bittensor_subnet_epoch_after_next_block')}) and on(netuid) {subnets}", Style(decimals=0)),
        ],
        width=12,
    )


def build() -> Board:
    board = Board(
        "bittensor-my-validators", "Bittensor / My validators",
        "Am I OK: a status per watched validator, the alerts firing, the permits projected lost and the last changes "
        "at the top; then every watched validator by subnet, its weight setting and earnings, stake weight and permit "
        "margin, pending child sets and next epochs. Two exporters of one job count once.",
        variables=[HOTKEY_PICKER],
        links=[
            link("Validator detail", DETAIL, "The validator picked (first one if several), with this exporter selection", include_vars=True),
            link("Network overview", "bittensor-network-overview", "Every validator in scope", include_vars=True),
        ],
    )
    board.row("Am I OK", *status.overview_stats(),
              status.status_table(width=24, height=8), status.firing_alerts_table(width=8, height=8),
              status.loss_projections_table(width=7, height=8), status.last_changes_table(width=9, height=8))
    board.row("By subnet", by_subnet_table())
    board.row("Weights and earnings", liveness.my_validators_table(), *liveness.my_validators_graphs())
    alias_legend = "{{alias}} subnet {{netuid}}"
    board.row(
        "Stake",
        graph_panel("Stake weight", "Stake weight of each watched validator per subnet.",
                    Query(with_alias(WATCHED_PAIRS), alias_legend), width=8, style=Style(unit="short"), axis_label="alpha"),
        graph_panel("Own stake", "Own stake of each watched validator per subnet (TotalHotkeyAlpha): a stake move shows "
                    "as a step, and in Last changes as own_stake_moved.",
                    Query(with_alias(of_watched_pairs(per_pair("bittensor_validator_own_stake_alpha"))), alias_legend),
                    width=8, style=Style(unit="short"), axis_label="alpha"),
        graph_panel("Permit margin", "Stake weight minus what keeps the permit (the larger of StakeThreshold and, on a "
                    "full subnet, the strongest uid without a permit). Below 0 the permit goes at the next epoch.",
                    Query(with_alias(MARGIN), alias_legend), width=8,
                    style=Style(unit="short", steps=[(None, "red"), (0, "green")]), axis_label="alpha", threshold_lines=True),
    )
    board.row("Pending child sets", *pending_tables())
    board.row("Next epochs", next_epochs_table())
    return board
