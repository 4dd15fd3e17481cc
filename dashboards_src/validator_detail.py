"""Bittensor / Validator detail: the dashboard as code.

One validator on one subnet: weight-setting liveness and earnings (`liveness`), own, inherited and
given stake, stake weight against the permit cutoff and the strongest contender, childkey take,
parents (and the alpha each gives), children, pending child sets that change it, and its recorded
changes.
"""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as models

from dashboards_src import liveness, status
from dashboards_src.board import Board, link, query_variable
from dashboards_src.panels import NAME, VALUE_AND_NAME, Column, Query, Style, graph_panel, stat_panel, table_panel
from dashboards_src.promql import events_in

# Hotkeys offered besides the watched ones: the strongest, not every hotkey in scope (5,077 at
# mainnet scale make a picker nobody can use).
PICKER_OTHERS = 50

CHANGES = 'bittensor_childkey_changes_total{hotkey="$hotkey", netuid="$netuid", instance=~"$instance"}'


def build() -> Board:
    board = Board(
        'bittensor-validator-detail',
        'Bittensor / Validator detail',
        'One validator on one subnet: whether it sets weights and what it earns, own, inherited and given stake, stake weight against the permit cutoff and the strongest contender, childkey take, parents (and the alpha each gives), children, pending child sets that change it, and its recorded changes.',
        variables=[
            query_variable(
                'hotkey',
                'Validator',
                f'query_result(sort_desc(max by (hotkey, alias) (bittensor_validator_info{{watched="true", instance=~"$instance"}}) * 1e18 or on(hotkey) topk({PICKER_OTHERS}, max by (hotkey, alias) (bittensor_validator_info{{instance=~"$instance"}}) * on(hotkey) group_left() max by (hotkey) (bittensor_validator_stake_weight_alpha{{instance=~"$instance"}}))))',
                description='Watched hotkeys first, by alias; then every other hotkey in scope, strongest first.',
                regex='/(?:alias="(?<text>[^"]+)",)?hotkey="(?<value>[^"]+)"/',
                sort=models.VariableSort.DISABLED,
            ),
            query_variable(
                'netuid',
                'Subnet',
                'label_values(bittensor_validator_stake_weight_alpha{hotkey="$hotkey", instance=~"$instance"}, netuid)',
                sort=models.VariableSort.NUMERICAL_ASC,
            ),
        ],
        links=[
            link('My validators', 'bittensor-my-validators', 'Every watched validator in one table', query='${datasource:queryparam}&${instance:queryparam}'),
        ],
    )
    board.row(
        'Validator',
        stat_panel(
            'Alias / coldkey',
            'bittensor_validator_info: the alias configured in scope.watch, and the coldkey owning the hotkey.',
            Query('max by (alias, coldkey) (bittensor_validator_info{hotkey="$hotkey", instance=~"$instance"})', '{{alias}} {{coldkey}}'),
            width=8,
            height=4,
            text=NAME,
        ),
        stat_panel(
            'UID',
            "The hotkey's uid on the subnet (label uid of bittensor_validator_permit; none for a child key without a uid).",
            Query('max by (uid) (bittensor_validator_permit{hotkey="$hotkey", netuid="$netuid", uid!="", instance=~"$instance"})', '{{uid}}'),
            width=2,
            height=4,
            style=Style(unit='none', decimals=0),
            text=NAME,
        ),
        stat_panel(
            'Permit',
            "Whether the uid holds a validator permit from the subnet's last epoch.",
            'max(bittensor_validator_permit{hotkey="$hotkey", netuid="$netuid", instance=~"$instance"})',
            width=3,
            height=4,
            style=Style(mappings={'0': ('no permit', 'red'), '1': ('permit', 'green')}, steps=[(None, 'red'), (1, 'green')]),
        ),
        stat_panel(
            'Stake weight',
            'Inherited alpha + TaoWeight x inherited root stake, in alpha.',
            'max(bittensor_validator_stake_weight_alpha{hotkey="$hotkey", netuid="$netuid", instance=~"$instance"})',
            style=Style(unit='short'),
            graph=True,
        ),
        stat_panel(
            'Permit margin',
            "Stake weight minus what a permit holder must keep at the next epoch: the larger of the chain's StakeThreshold and, on a full subnet (permits = max validators), the strongest uid without a permit. Below 0 the permit goes at the next epoch if nothing else changes.",
            'max(bittensor_validator_stake_weight_alpha{hotkey="$hotkey", netuid="$netuid", instance=~"$instance"}) - max(max by (netuid) (label_replace(max by (netuid) (bittensor_subnet_top_contender_stake_weight_alpha{netuid="$netuid", instance=~"$instance"}) and on(netuid) (max by (netuid) (bittensor_subnet_validator_permits{netuid="$netuid", instance=~"$instance"}) >= on(netuid) max by (netuid) (bittensor_subnet_max_validators{netuid="$netuid", instance=~"$instance"})), "bound", "top contender", "", "") or label_replace(max by (netuid) (bittensor_subnet_max_validators{netuid="$netuid", instance=~"$instance"}) * 0 + scalar(max(bittensor_chain_stake_threshold_alpha{instance=~"$instance"})), "bound", "stake threshold", "", "")))',
            style=Style(unit='short', steps=[(None, 'red'), (0, 'green')]),
        ),
        stat_panel(
            'Parents / children',
            'Parents and children on the subnet (edges of bittensor_childkey_proportion_ratio).',
            [
                Query('count(max by (parent_hotkey) (bittensor_childkey_proportion_ratio{child_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"})) or vector(0)', 'parents'),
                Query('count(max by (child_hotkey) (bittensor_childkey_proportion_ratio{parent_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"})) or vector(0)', 'children'),
            ],
            width=3,
            height=4,
            style=Style(decimals=0),
            text=VALUE_AND_NAME,
        ),
        # the same table as My validators', for this hotkey (on any subnet)
        status.firing_alerts_table(width=24, height=5),
    )
    board.row('Weights and earnings', *liveness.detail_panels(), *liveness.edge_earnings_tables())
    board.row(
        'Stake',
        graph_panel(
            'Own vs inherited vs given stake',
            'Own alpha A, alpha given to children, alpha received from parents, and inherited alpha A - given + received.',
            [
                Query('max(bittensor_validator_own_stake_alpha{hotkey="$hotkey", netuid="$netuid", instance=~"$instance"})', 'own'),
                Query('max(bittensor_validator_inherited_stake_alpha{hotkey="$hotkey", netuid="$netuid", instance=~"$instance"})', 'inherited'),
                Query('max(bittensor_validator_stake_to_children_alpha{hotkey="$hotkey", netuid="$netuid", instance=~"$instance"}) or vector(0)', 'given to children'),
                Query('max(bittensor_validator_stake_from_parents_alpha{hotkey="$hotkey", netuid="$netuid", instance=~"$instance"}) or vector(0)', 'received from parents'),
            ],
            style=Style(unit='short'),
            axis_label='alpha',
        ),
        graph_panel(
            'Root stake',
            "Own root stake T of the hotkey (TAO on netuid 0, the same on every subnet) and the root stake inherited through this subnet's childkeys (T - given + received).",
            [
                Query('max(bittensor_hotkey_root_stake_tao{hotkey="$hotkey", instance=~"$instance"}) or vector(0)', 'own root'),
                Query('max(bittensor_validator_inherited_root_stake_tao{hotkey="$hotkey", netuid="$netuid", instance=~"$instance"}) or max(bittensor_hotkey_root_stake_tao{hotkey="$hotkey", instance=~"$instance"}) or vector(0)', 'inherited root'),
            ],
            style=Style(unit='short'),
            axis_label='TAO',
        ),
        graph_panel(
            'Stake weight vs permit cutoff, top contender and stake threshold',
            "Stake weight, the k-th strongest permit holder's (permit cutoff), the strongest uid without a permit (top contender) and the chain's StakeThreshold.",
            [
                Query('max(bittensor_validator_stake_weight_alpha{hotkey="$hotkey", netuid="$netuid", instance=~"$instance"})', 'stake weight'),
                Query('max(bittensor_subnet_permit_cutoff_stake_weight_alpha{netuid="$netuid", instance=~"$instance"})', 'permit cutoff'),
                Query('max(bittensor_subnet_top_contender_stake_weight_alpha{netuid="$netuid", instance=~"$instance"})', 'top contender'),
                Query('max(bittensor_chain_stake_threshold_alpha{instance=~"$instance"})', 'stake threshold'),
            ],
            style=Style(unit='short'),
            axis_label='alpha',
        ),
        graph_panel(
            'Permit margin',
            'Stake weight minus what keeps the permit (the larger of StakeThreshold and, on a full subnet, the top contender), minus the permit cutoff, and minus the stake threshold.',
            [
                Query('max(bittensor_validator_stake_weight_alpha{hotkey="$hotkey", netuid="$netuid", instance=~"$instance"}) - max(max by (netuid) (label_replace(max by (netuid) (bittensor_subnet_top_contender_stake_weight_alpha{netuid="$netuid", instance=~"$instance"}) and on(netuid) (max by (netuid) (bittensor_subnet_validator_permits{netuid="$netuid", instance=~"$instance"}) >= on(netuid) max by (netuid) (bittensor_subnet_max_validators{netuid="$netuid", instance=~"$instance"})), "bound", "top contender", "", "") or label_replace(max by (netuid) (bittensor_subnet_max_validators{netuid="$netuid", instance=~"$instance"}) * 0 + scalar(max(bittensor_chain_stake_threshold_alpha{instance=~"$instance"})), "bound", "stake threshold", "", "")))', 'to losing the permit'),
                Query('max(bittensor_validator_stake_weight_alpha{hotkey="$hotkey", netuid="$netuid", instance=~"$instance"}) - max(bittensor_subnet_permit_cutoff_stake_weight_alpha{netuid="$netuid", instance=~"$instance"})', 'over permit cutoff'),
                Query('max(bittensor_validator_stake_weight_alpha{hotkey="$hotkey", netuid="$netuid", instance=~"$instance"}) - max(bittensor_chain_stake_threshold_alpha{instance=~"$instance"})', 'over stake threshold'),
            ],
            style=Style(unit='short'),
            axis_label='alpha',
        ),
    )
    board.row(
        'Childkey take',
        graph_panel(
            'Childkey take',
            "Effective childkey take, what payouts use: max(stored take, MinChildkeyTake, the subnet's MinChildkeyTakePerSubnet), never capped at MaxChildkeyTake. The take as stored (ChildkeyTake, 0 if never set): below the effective one only while a minimum lifts it; above the chain maximum when the bound was lowered after it was set (take_above_max, docs/chain-states.md), and paid whole. Then the expected take configured for a watched hotkey, and the chain's bounds.",
            [
                Query('max(bittensor_validator_childkey_take_ratio{hotkey="$hotkey", netuid="$netuid", instance=~"$instance"})', 'effective take'),
                Query('max(bittensor_validator_stored_childkey_take_ratio{hotkey="$hotkey", netuid="$netuid", instance=~"$instance"})', 'stored take'),
                Query('max(bittensor_validator_expected_childkey_take_ratio{hotkey="$hotkey", netuid="$netuid", instance=~"$instance"})', 'expected'),
                Query('max(bittensor_chain_min_childkey_take_ratio{instance=~"$instance"})', 'chain minimum'),
                Query('max(bittensor_chain_max_childkey_take_ratio{instance=~"$instance"})', 'chain maximum'),
            ],
            width=16,
            height=8,
            style=Style(unit='percentunit'),
        ),
        stat_panel(
            'Take vs expected',
            'Current effective take, the take as stored (differs only while a minimum lifts it), and the configured expected take (watched hotkeys only).',
            [
                Query('max(bittensor_validator_childkey_take_ratio{hotkey="$hotkey", netuid="$netuid", instance=~"$instance"})', 'effective'),
                Query('max(bittensor_validator_stored_childkey_take_ratio{hotkey="$hotkey", netuid="$netuid", instance=~"$instance"})', 'stored'),
                Query('max(bittensor_validator_expected_childkey_take_ratio{hotkey="$hotkey", netuid="$netuid", instance=~"$instance"})', 'expected'),
            ],
            width=8,
            height=8,
            style=Style(unit='percentunit', decimals=2),
            text=VALUE_AND_NAME,
        ),
    )
    board.row(
        'Parents and children',
        table_panel(
            'Parents',
            "Hotkeys delegating a share of their stake to this validator on the subnet, and the alpha it inherits from each (the parent's own alpha x proportion, as the chain computes it).",
            ['parent_hotkey', 'parent_alias'],
            [
                Column('proportion', '((max by (parent_hotkey) (bittensor_childkey_proportion_ratio{child_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"})) * on(parent_hotkey) group_left(parent_alias) label_replace(label_replace(topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"})), "parent_hotkey", "$1", "hotkey", "(.*)"), "parent_alias", "$1", "alias", "(.*)")) or on(parent_hotkey) (max by (parent_hotkey) (bittensor_childkey_proportion_ratio{child_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"}))'),
                Column('inherited alpha', '((max by (parent_hotkey) (bittensor_childkey_inherited_alpha{child_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"})) * on(parent_hotkey) group_left(parent_alias) label_replace(label_replace(topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"})), "parent_hotkey", "$1", "hotkey", "(.*)"), "parent_alias", "$1", "alias", "(.*)")) or on(parent_hotkey) (max by (parent_hotkey) (bittensor_childkey_inherited_alpha{child_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"}))', Style(unit='short')),
            ],
            width=12,
            height=8,
            style=Style(unit='percentunit'),
            sort_by=('inherited alpha', True),
            label_styles={'parent_hotkey': Style(links=[('Validator detail', '/d/bittensor-validator-detail/bittensor-validator-detail?${datasource:queryparam}&${instance:queryparam}&var-hotkey=${__data.fields["parent"]}&var-netuid=${netuid}&${__url_time_range}')])},
            renames={"parent_hotkey": "parent", "parent_alias": "alias"},
        ),
        table_panel(
            'Children',
            'Hotkeys this validator delegates a share of its stake to on the subnet, and the alpha each receives from it.',
            ['child_hotkey', 'child_alias'],
            [
                Column('proportion', '((max by (child_hotkey) (bittensor_childkey_proportion_ratio{parent_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"})) * on(child_hotkey) group_left(child_alias) label_replace(label_replace(topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"})), "child_hotkey", "$1", "hotkey", "(.*)"), "child_alias", "$1", "alias", "(.*)")) or on(child_hotkey) (max by (child_hotkey) (bittensor_childkey_proportion_ratio{parent_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"}))'),
                Column('alpha given', '((max by (child_hotkey) (bittensor_childkey_inherited_alpha{parent_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"})) * on(child_hotkey) group_left(child_alias) label_replace(label_replace(topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"})), "child_hotkey", "$1", "hotkey", "(.*)"), "child_alias", "$1", "alias", "(.*)")) or on(child_hotkey) (max by (child_hotkey) (bittensor_childkey_inherited_alpha{parent_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"}))', Style(unit='short')),
            ],
            width=12,
            height=8,
            style=Style(unit='percentunit'),
            sort_by=('alpha given', True),
            label_styles={'child_hotkey': Style(links=[('Validator detail', '/d/bittensor-validator-detail/bittensor-validator-detail?${datasource:queryparam}&${instance:queryparam}&var-hotkey=${__data.fields["child"]}&var-netuid=${netuid}&${__url_time_range}')])},
            renames={"child_hotkey": "child", "child_alias": "alias"},
        ),
        graph_panel(
            'Alpha inherited from each parent',
            "bittensor_childkey_inherited_alpha: the alpha this validator receives from each parent on the subnet (the parent's own alpha x its proportion). A parent leaving, cutting the proportion or unstaking shows here.",
            Query('((max by (parent_hotkey) (bittensor_childkey_inherited_alpha{child_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"})) * on(parent_hotkey) group_left(parent_alias) label_replace(label_replace(topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"})), "parent_hotkey", "$1", "hotkey", "(.*)"), "parent_alias", "$1", "alias", "(.*)")) or on(parent_hotkey) (max by (parent_hotkey) (bittensor_childkey_inherited_alpha{child_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"}))', '{{parent_alias}} {{parent_hotkey}}'),
            width=24,
            height=8,
            style=Style(unit='short'),
            axis_label='alpha',
            stacked=True,
        ),
    )
    board.row(
        'Pending child sets',
        table_panel(
            'Pending child sets that change its inherited stake',
            "Child sets scheduled by its parents (or by a hotkey about to become one) that change this validator's proportion when they apply: pending minus current proportion (negative: cut; minus the current proportion: dropped; positive: raised or added), the alpha it inherits from that parent now, and the block after which the set applies (at the subnet's first epoch after it). The parent can still replace the set before then.",
            ['parent_hotkey', 'parent_alias'],
            [
                Column('change', '((max by (parent_hotkey, netuid) (bittensor_childkey_pending_proportion_change_ratio{child_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"})) * on(parent_hotkey) group_left(parent_alias) label_replace(label_replace(topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"})), "parent_hotkey", "$1", "hotkey", "(.*)"), "parent_alias", "$1", "alias", "(.*)")) or on(parent_hotkey, netuid) (max by (parent_hotkey, netuid) (bittensor_childkey_pending_proportion_change_ratio{child_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"}))', Style(steps=[(None, 'red'), (0, 'green')], cell=True)),
                Column('current proportion', '(((max by (parent_hotkey, netuid) (bittensor_childkey_proportion_ratio{child_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"}) or max by (parent_hotkey, netuid) (bittensor_childkey_pending_proportion_change_ratio{child_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"}) * 0) and on(parent_hotkey, netuid) max by (parent_hotkey, netuid) (bittensor_childkey_pending_proportion_change_ratio{child_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"})) * on(parent_hotkey) group_left(parent_alias) label_replace(label_replace(topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"})), "parent_hotkey", "$1", "hotkey", "(.*)"), "parent_alias", "$1", "alias", "(.*)")) or on(parent_hotkey, netuid) ((max by (parent_hotkey, netuid) (bittensor_childkey_proportion_ratio{child_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"}) or max by (parent_hotkey, netuid) (bittensor_childkey_pending_proportion_change_ratio{child_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"}) * 0) and on(parent_hotkey, netuid) max by (parent_hotkey, netuid) (bittensor_childkey_pending_proportion_change_ratio{child_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"}))'),
                Column('pending proportion', '(((max by (parent_hotkey, netuid) (bittensor_childkey_pending_proportion_ratio{child_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"}) or max by (parent_hotkey, netuid) (bittensor_childkey_pending_proportion_change_ratio{child_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"}) * 0) and on(parent_hotkey, netuid) max by (parent_hotkey, netuid) (bittensor_childkey_pending_proportion_change_ratio{child_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"})) * on(parent_hotkey) group_left(parent_alias) label_replace(label_replace(topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"})), "parent_hotkey", "$1", "hotkey", "(.*)"), "parent_alias", "$1", "alias", "(.*)")) or on(parent_hotkey, netuid) ((max by (parent_hotkey, netuid) (bittensor_childkey_pending_proportion_ratio{child_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"}) or max by (parent_hotkey, netuid) (bittensor_childkey_pending_proportion_change_ratio{child_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"}) * 0) and on(parent_hotkey, netuid) max by (parent_hotkey, netuid) (bittensor_childkey_pending_proportion_change_ratio{child_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"}))'),
                Column('inherited alpha now', '(((max by (parent_hotkey, netuid) (bittensor_childkey_inherited_alpha{child_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"}) or max by (parent_hotkey, netuid) (bittensor_childkey_pending_proportion_change_ratio{child_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"}) * 0) and on(parent_hotkey, netuid) max by (parent_hotkey, netuid) (bittensor_childkey_pending_proportion_change_ratio{child_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"})) * on(parent_hotkey) group_left(parent_alias) label_replace(label_replace(topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"})), "parent_hotkey", "$1", "hotkey", "(.*)"), "parent_alias", "$1", "alias", "(.*)")) or on(parent_hotkey, netuid) ((max by (parent_hotkey, netuid) (bittensor_childkey_inherited_alpha{child_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"}) or max by (parent_hotkey, netuid) (bittensor_childkey_pending_proportion_change_ratio{child_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"}) * 0) and on(parent_hotkey, netuid) max by (parent_hotkey, netuid) (bittensor_childkey_pending_proportion_change_ratio{child_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"}))', Style(unit='short')),
                Column('applies after block', '((max by (parent_hotkey, netuid) (bittensor_childkey_pending_cooldown_block{netuid="$netuid", instance=~"$instance"}) and on(parent_hotkey, netuid) max by (parent_hotkey, netuid) (bittensor_childkey_pending_proportion_change_ratio{child_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"})) * on(parent_hotkey) group_left(parent_alias) label_replace(label_replace(topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"})), "parent_hotkey", "$1", "hotkey", "(.*)"), "parent_alias", "$1", "alias", "(.*)")) or on(parent_hotkey, netuid) (max by (parent_hotkey, netuid) (bittensor_childkey_pending_cooldown_block{netuid="$netuid", instance=~"$instance"}) and on(parent_hotkey, netuid) max by (parent_hotkey, netuid) (bittensor_childkey_pending_proportion_change_ratio{child_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"}))', Style(unit='none', decimals=0)),
                Column('blocks to go', '(((max by (parent_hotkey, netuid) (bittensor_childkey_pending_cooldown_block{netuid="$netuid", instance=~"$instance"}) and on(parent_hotkey, netuid) max by (parent_hotkey, netuid) (bittensor_childkey_pending_proportion_change_ratio{child_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"})) - scalar(max(bittensor_chain_block{instance=~"$instance"}))) * on(parent_hotkey) group_left(parent_alias) label_replace(label_replace(topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"})), "parent_hotkey", "$1", "hotkey", "(.*)"), "parent_alias", "$1", "alias", "(.*)")) or on(parent_hotkey, netuid) ((max by (parent_hotkey, netuid) (bittensor_childkey_pending_cooldown_block{netuid="$netuid", instance=~"$instance"}) and on(parent_hotkey, netuid) max by (parent_hotkey, netuid) (bittensor_childkey_pending_proportion_change_ratio{child_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"})) - scalar(max(bittensor_chain_block{instance=~"$instance"})))', Style(unit='none', decimals=0)),
            ],
            width=24,
            height=6,
            style=Style(unit='percentunit'),
            sort_by=('change', False),
            label_styles={'parent_hotkey': Style(links=[('Validator detail', '/d/bittensor-validator-detail/bittensor-validator-detail?${datasource:queryparam}&${instance:queryparam}&var-hotkey=${__data.fields["parent"]}&var-netuid=${netuid}&${__url_time_range}')])},
            renames={"parent_hotkey": "parent", "parent_alias": "alias"},
        ),
        table_panel(
            'Its own pending child set',
            'Child set this validator scheduled: children (0 revokes all) and the block after which it applies at the next epoch.',
            ['parent_hotkey'],
            [
                Column('children', 'max by (parent_hotkey, netuid) (bittensor_childkey_pending_children{parent_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"})'),
                Column('apply block', 'max by (parent_hotkey, netuid) (bittensor_childkey_pending_cooldown_block{parent_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"})', Style(unit='none')),
                Column('blocks to go', 'max by (parent_hotkey, netuid) (bittensor_childkey_pending_cooldown_block{parent_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"}) - scalar(max(bittensor_chain_block{instance=~"$instance"}))', Style(unit='none')),
            ],
            width=12,
            height=6,
            style=Style(decimals=0),
            renames={"parent_hotkey": "parent"},
        ),
        table_panel(
            'Pending proportions',
            'Proportions of scheduled child sets this validator is part of, as parent or as child.',
            ['parent_hotkey', 'child_hotkey'],
            [
                Column('proportion', 'max by (parent_hotkey, child_hotkey) (bittensor_childkey_pending_proportion_ratio{parent_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"}) or max by (parent_hotkey, child_hotkey) (bittensor_childkey_pending_proportion_ratio{child_hotkey="$hotkey", netuid="$netuid", instance=~"$instance"})'),
            ],
            width=12,
            height=6,
            style=Style(unit='percentunit'),
            sort_by=('proportion', True),
            renames={"parent_hotkey": "parent", "child_hotkey": "child"},
        ),
    )
    board.row(
        'Recent changes',
        graph_panel(
            'Changes',
            'Change events recorded for this validator on the subnet, per kind (for an edge: counted on the child; for a pending set: on the parent). Watched hotkeys only (bittensor_childkey_changes_total).',
            Query(f'max by (kind) {events_in(CHANGES, "$__rate_interval")}', '{{kind}}'),
            width=14,
            height=8,
            style=Style(unit='short', decimals=0),
            bars=True,
            stacked=True,
            minimum=0,
        ),
        table_panel(
            'Last change of each kind',
            'Chain time and block of the last recorded change of each kind (watched hotkeys only; from the history database, so it survives restarts).',
            ['kind'],
            [
                Column('time', 'max by (kind) (bittensor_validator_last_change_timestamp_seconds{hotkey="$hotkey", netuid="$netuid", instance=~"$instance"}) * 1000', Style(unit='dateTimeAsIso')),
                Column('block', 'max by (kind) (bittensor_validator_last_change_block{hotkey="$hotkey", netuid="$netuid", instance=~"$instance"})'),
            ],
            width=10,
            height=8,
            style=Style(unit='none', decimals=0),
            sort_by=('time', True),
        ),
    )
    board.row(
        'Next epochs',
        stat_panel(
            'Next epoch',
            "Block of the subnet's next epoch, which decides validator permits (bittensor_subnet_next_epoch_block).",
            'max(bittensor_subnet_next_epoch_block{netuid="$netuid", instance=~"$instance"})',
            width=5,
            height=4,
            style=Style(unit='none', decimals=0),
        ),
        stat_panel(
            'Next epoch in',
            "Time until the next epoch: blocks left times 12 s (the chain's block time).",
            '(max(bittensor_subnet_next_epoch_block{netuid="$netuid", instance=~"$instance"}) - max(bittensor_chain_block{instance=~"$instance"})) * 12',
            width=5,
            height=4,
            style=Style(unit='s'),
        ),
        stat_panel(
            'Permit at the next epoch',
            "The permit the next epoch gives by the chain's rule at this block's stake weights: bittensor_validator_projected_permit where that changes the permit, else the permit held now (the projection keeps it).",
            'max(bittensor_validator_projected_permit{hotkey="$hotkey", netuid="$netuid", instance=~"$instance"}) or max(bittensor_validator_permit{hotkey="$hotkey", netuid="$netuid", instance=~"$instance"})',
            width=5,
            height=4,
            style=Style(mappings={'0': ('no permit', 'red'), '1': ('permit', 'green')}, steps=[(None, 'red'), (1, 'green')]),
        ),
        stat_panel(
            'Permit at the epoch after next',
            "With the pending child sets that apply right after the next epoch (cooldown block before it): bittensor_validator_projected_permit_after_pending where a pending set changes it, else the next epoch's. The alert BittensorValidatorPermitLossAfterPending names the parent whose set it is.",
            'max(bittensor_validator_projected_permit_after_pending{hotkey="$hotkey", netuid="$netuid", instance=~"$instance"}) or max(bittensor_validator_projected_permit{hotkey="$hotkey", netuid="$netuid", instance=~"$instance"}) or max(bittensor_validator_permit{hotkey="$hotkey", netuid="$netuid", instance=~"$instance"})',
            width=5,
            height=4,
            style=Style(mappings={'0': ('no permit', 'red'), '1': ('permit', 'green')}, steps=[(None, 'red'), (1, 'green')]),
        ),
        stat_panel(
            'Metagraph check',
            "Largest difference (rao) in the last 30 minutes between the chain's own inherited alpha, inherited root and stake weight (SubnetInfoRuntimeApi.get_selective_metagraph) and the exporter's on this subnet; subnets of watched hotkeys are checked in turn. Anything but 0 means a formula differs from the runtime's.",
            'max(max_over_time(bittensor_subnet_metagraph_difference_rao{netuid="$netuid", instance=~"$instance"}[30m]))',
            style=Style(unit='none', decimals=0, steps=[(None, 'green'), (1, 'red')]),
        ),
    )
    return board
