"""Bittensor / Network overview: the dashboard as code.

Validators in scope of the bittensor validator exporter: the chain's unusual states and the subnets
being dissolved (`chain_state`), weight setting (who falls behind), stake weight, parents and
children, takes, changes and subnets. Two exporters of one job count once.
"""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as models

from dashboards_src import chain_state, liveness
from dashboards_src.board import Board, query_variable
from dashboards_src.panels import VALUE_AND_NAME, Column, Query, Style, graph_panel, histogram_panel, stat_panel, table_panel
from dashboards_src.promql import events_in

SUBNET_CHANGES = 'bittensor_subnet_changes_total{netuid=~"$netuid", instance=~"$instance"}'


def build() -> Board:
    board = Board(
        'bittensor-network-overview',
        'Bittensor / Network overview',
        'Validators in scope of the bittensor validator exporter: unusual chain states and subnets being dissolved, who is falling behind on weight setting, stake weight, parents and children, takes, changes and subnets. Two exporters of one job count once.',
        variables=[
            query_variable(
                'netuid',
                'Subnet',
                'label_values(bittensor_subnet_max_validators{instance=~"$instance"}, netuid)',
                sort=models.VariableSort.NUMERICAL_ASC,
                multi=True,
                all_value='.*',
            ),
        ],
        links=[
        ],
    )
    board.row(
        'Scope',
        stat_panel(
            'Validators in scope',
            '(hotkey, subnet) pairs the exporter reports: permit holders above scope.min_stake_weight plus watched hotkeys.',
            'count(max by (hotkey, netuid) (bittensor_validator_stake_weight_alpha{netuid=~"$netuid", instance=~"$instance"}))',
        ),
        stat_panel(
            'Distinct hotkeys',
            'Hotkeys with at least one validator in scope (a hotkey can validate on several subnets).',
            'count(max by (hotkey) (bittensor_validator_stake_weight_alpha{netuid=~"$netuid", instance=~"$instance"}))',
        ),
        stat_panel(
            'Subnets',
            'Subnets (other than root) the exporter reads.',
            'count(max by (netuid) (bittensor_subnet_max_validators{netuid=~"$netuid", instance=~"$instance"}))',
        ),
        stat_panel(
            'Child edges',
            'Parent/child edges touching a validator in scope.',
            'count(max by (parent_hotkey, child_hotkey, netuid) (bittensor_childkey_proportion_ratio{netuid=~"$netuid", instance=~"$instance"})) or vector(0)',
        ),
        stat_panel(
            'Pending child sets',
            'Child sets scheduled but not yet applied (bittensor_childkey_pending_children).',
            'count(max by (parent_hotkey, netuid) (bittensor_childkey_pending_children{netuid=~"$netuid", instance=~"$instance"})) or vector(0)',
        ),
        stat_panel(
            'Finalized block',
            'Block the last snapshot was read at.',
            'max(bittensor_chain_block{instance=~"$instance"})',
            style=Style(unit='none', decimals=0),
        ),
        stat_panel(
            'TaoWeight',
            'Weight of root TAO in stake weight (bittensor_chain_tao_weight_ratio).',
            'max(bittensor_chain_tao_weight_ratio{instance=~"$instance"})',
            style=Style(unit='percentunit', decimals=1),
        ),
        stat_panel(
            'Stake threshold',
            'Minimum stake weight for a validator permit (StakeThreshold), in alpha.',
            'max(bittensor_chain_stake_threshold_alpha{instance=~"$instance"})',
            style=Style(unit='short'),
        ),
        stat_panel(
            'Childkey take bounds',
            'Chain minimum and maximum childkey take.',
            [
                Query('max(bittensor_chain_min_childkey_take_ratio{instance=~"$instance"})', 'min'),
                Query('max(bittensor_chain_max_childkey_take_ratio{instance=~"$instance"})', 'max'),
            ],
            style=Style(unit='percentunit', decimals=1),
            text=VALUE_AND_NAME,
        ),
        stat_panel(
            'Child key cooldown',
            'Blocks before a scheduled child set can apply (PendingChildKeyCooldown).',
            'max(bittensor_chain_pending_childkey_cooldown_blocks{instance=~"$instance"})',
            style=Style(unit='none', decimals=0),
        ),
        stat_panel(
            'Runtime',
            "spec_version of the runtime at the snapshot's block.",
            'max(bittensor_chain_runtime_spec_version{instance=~"$instance"})',
            style=Style(unit='none', decimals=0),
        ),
        stat_panel(
            'Stake weight given away',
            'Share of own alpha that validators in scope delegate to children.',
            '(sum(max by (hotkey, netuid) (bittensor_validator_stake_to_children_alpha{netuid=~"$netuid", instance=~"$instance"})) or vector(0)) / sum(max by (hotkey, netuid) (bittensor_validator_own_stake_alpha{netuid=~"$netuid", instance=~"$instance"}))',
            style=Style(unit='percentunit', decimals=1),
        ),
    )
    board.row('Chain state', *chain_state.panels())
    board.row('Weight setting', liveness.falling_behind_table(), liveness.activity_by_subnet_table())
    board.row(
        'Stake weight',
        graph_panel(
            'Total stake weight and where it comes from',
            'Sums over validators in scope: stake weight (inherited alpha + TaoWeight x inherited root), own alpha, alpha received from parents and alpha given to children.',
            [
                Query('sum(max by (hotkey, netuid) (bittensor_validator_stake_weight_alpha{netuid=~"$netuid", instance=~"$instance"}))', 'stake weight'),
                Query('sum(max by (hotkey, netuid) (bittensor_validator_own_stake_alpha{netuid=~"$netuid", instance=~"$instance"}))', 'own alpha'),
                Query('sum(max by (hotkey, netuid) (bittensor_validator_inherited_stake_alpha{netuid=~"$netuid", instance=~"$instance"}))', 'inherited alpha'),
                Query('sum(max by (hotkey, netuid) (bittensor_validator_stake_from_parents_alpha{netuid=~"$netuid", instance=~"$instance"})) or vector(0)', 'received from parents'),
                Query('sum(max by (hotkey, netuid) (bittensor_validator_stake_to_children_alpha{netuid=~"$netuid", instance=~"$instance"})) or vector(0)', 'given to children'),
            ],
            style=Style(unit='short'),
            axis_label='alpha',
        ),
        graph_panel(
            'Stake weight by subnet',
            'Sum of the stake weight of validators in scope, per subnet.',
            Query('sum by (netuid) (max by (hotkey, netuid) (bittensor_validator_stake_weight_alpha{netuid=~"$netuid", instance=~"$instance"}))', 'subnet {{netuid}}'),
            style=Style(unit='short'),
            axis_label='alpha',
        ),
        table_panel(
            'Top validators by stake weight',
            'The 15 largest stake weights in scope; click a row for its detail.',
            ['hotkey', 'alias', 'netuid'],
            [
                Column('stake weight (alpha)', '((topk(15, max by (hotkey, netuid) (bittensor_validator_stake_weight_alpha{netuid=~"$netuid", instance=~"$instance"}))) * on(hotkey) group_left(alias) topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"}))) or on(hotkey, netuid) (topk(15, max by (hotkey, netuid) (bittensor_validator_stake_weight_alpha{netuid=~"$netuid", instance=~"$instance"})))'),
            ],
            style=Style(unit='short'),
            sort_by=('stake weight (alpha)', True),
            label_styles={'hotkey': Style(links=[('Validator detail', '/d/bittensor-validator-detail/bittensor-validator-detail?${datasource:queryparam}&${instance:queryparam}&var-hotkey=${__data.fields["hotkey"]}&var-netuid=${__data.fields["netuid"]}&${__url_time_range}')])},
        ),
    )
    board.row(
        'Parents and children',
        table_panel(
            'Biggest parents',
            'Validators giving the most alpha to their childkeys (own alpha x sum of child proportions).',
            ['hotkey', 'alias', 'netuid'],
            [
                Column('given to children (alpha)', '((topk(10, max by (hotkey, netuid) (bittensor_validator_stake_to_children_alpha{netuid=~"$netuid", instance=~"$instance"}) > 0)) * on(hotkey) group_left(alias) topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"}))) or on(hotkey, netuid) (topk(10, max by (hotkey, netuid) (bittensor_validator_stake_to_children_alpha{netuid=~"$netuid", instance=~"$instance"}) > 0))'),
            ],
            width=12,
            height=9,
            style=Style(unit='short'),
            sort_by=('given to children (alpha)', True),
            label_styles={'hotkey': Style(links=[('Validator detail', '/d/bittensor-validator-detail/bittensor-validator-detail?${datasource:queryparam}&${instance:queryparam}&var-hotkey=${__data.fields["hotkey"]}&var-netuid=${__data.fields["netuid"]}&${__url_time_range}')])},
        ),
        table_panel(
            'Biggest children',
            "Validators receiving the most alpha from their parents' own stake.",
            ['hotkey', 'alias', 'netuid'],
            [
                Column('received from parents (alpha)', '((topk(10, max by (hotkey, netuid) (bittensor_validator_stake_from_parents_alpha{netuid=~"$netuid", instance=~"$instance"}) > 0)) * on(hotkey) group_left(alias) topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"}))) or on(hotkey, netuid) (topk(10, max by (hotkey, netuid) (bittensor_validator_stake_from_parents_alpha{netuid=~"$netuid", instance=~"$instance"}) > 0))'),
            ],
            width=12,
            height=9,
            style=Style(unit='short'),
            sort_by=('received from parents (alpha)', True),
            label_styles={'hotkey': Style(links=[('Validator detail', '/d/bittensor-validator-detail/bittensor-validator-detail?${datasource:queryparam}&${instance:queryparam}&var-hotkey=${__data.fields["hotkey"]}&var-netuid=${__data.fields["netuid"]}&${__url_time_range}')])},
        ),
        graph_panel(
            'Child edges and pending sets by subnet',
            'Parent/child edges and scheduled child sets touching validators in scope.',
            [
                Query('count by (netuid) (max by (parent_hotkey, child_hotkey, netuid) (bittensor_childkey_proportion_ratio{netuid=~"$netuid", instance=~"$instance"}))', 'edges, subnet {{netuid}}'),
                Query('count by (netuid) (max by (parent_hotkey, netuid) (bittensor_childkey_pending_children{netuid=~"$netuid", instance=~"$instance"}))', 'pending sets, subnet {{netuid}}'),
            ],
            width=24,
            height=7,
            style=Style(unit='short', decimals=0),
        ),
    )
    board.row(
        'Childkey takes',
        histogram_panel(
            'Take distribution',
            'How many validators in scope charge each effective childkey take (buckets of 1 %).',
            'max by (hotkey, netuid) (bittensor_validator_childkey_take_ratio{netuid=~"$netuid", instance=~"$instance"})',
            0.01,
            style=Style(unit='percentunit'),
        ),
        stat_panel(
            'Validators at the maximum take',
            "Validators in scope whose effective take equals the chain's MaxChildkeyTake, or lies above it once the bound was lowered (take_above_max in Unusual chain states).",
            'count(max by (hotkey, netuid) (bittensor_validator_childkey_take_ratio{netuid=~"$netuid", instance=~"$instance"}) >= scalar(max(bittensor_chain_max_childkey_take_ratio{instance=~"$instance"}))) or vector(0)',
            style=Style(decimals=0),
        ),
        stat_panel(
            'Validators at zero take',
            'Validators in scope with no childkey take (or the chain minimum of 0).',
            'count(max by (hotkey, netuid) (bittensor_validator_childkey_take_ratio{netuid=~"$netuid", instance=~"$instance"}) == 0) or vector(0)',
            style=Style(decimals=0),
        ),
        stat_panel(
            'Median take',
            'Median effective childkey take over validators in scope.',
            'quantile(0.5, max by (hotkey, netuid) (bittensor_validator_childkey_take_ratio{netuid=~"$netuid", instance=~"$instance"}))',
            style=Style(unit='percentunit', decimals=1),
        ),
        table_panel(
            'Watched hotkeys: take vs expected',
            'On-chain effective take of each watched hotkey with an expected_take, the expected take, and the difference (0 when they agree).',
            ['hotkey', 'alias', 'netuid'],
            [
                Column('take', '((max by (hotkey, netuid) (bittensor_validator_childkey_take_ratio{netuid=~"$netuid", instance=~"$instance"}) and on(hotkey, netuid) max by (hotkey, netuid) (bittensor_validator_expected_childkey_take_ratio{netuid=~"$netuid", instance=~"$instance"})) * on(hotkey) group_left(alias) topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"}))) or on(hotkey, netuid) (max by (hotkey, netuid) (bittensor_validator_childkey_take_ratio{netuid=~"$netuid", instance=~"$instance"}) and on(hotkey, netuid) max by (hotkey, netuid) (bittensor_validator_expected_childkey_take_ratio{netuid=~"$netuid", instance=~"$instance"}))'),
                Column('expected', '((max by (hotkey, netuid) (bittensor_validator_expected_childkey_take_ratio{netuid=~"$netuid", instance=~"$instance"})) * on(hotkey) group_left(alias) topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"}))) or on(hotkey, netuid) (max by (hotkey, netuid) (bittensor_validator_expected_childkey_take_ratio{netuid=~"$netuid", instance=~"$instance"}))'),
                Column('difference', '((max by (hotkey, netuid) (bittensor_validator_childkey_take_ratio{netuid=~"$netuid", instance=~"$instance"}) - on(hotkey, netuid) max by (hotkey, netuid) (bittensor_validator_expected_childkey_take_ratio{netuid=~"$netuid", instance=~"$instance"})) * on(hotkey) group_left(alias) topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"}))) or on(hotkey, netuid) (max by (hotkey, netuid) (bittensor_validator_childkey_take_ratio{netuid=~"$netuid", instance=~"$instance"}) - on(hotkey, netuid) max by (hotkey, netuid) (bittensor_validator_expected_childkey_take_ratio{netuid=~"$netuid", instance=~"$instance"}))'),
            ],
            width=12,
            height=8,
            style=Style(unit='percentunit'),
            label_styles={'hotkey': Style(links=[('Validator detail', '/d/bittensor-validator-detail/bittensor-validator-detail?${datasource:queryparam}&${instance:queryparam}&var-hotkey=${__data.fields["hotkey"]}&var-netuid=${__data.fields["netuid"]}&${__url_time_range}')])},
        ),
    )
    board.row(
        'Recent changes',
        graph_panel(
            'Changes by kind',
            "Change events the exporter's history recorded on the chain (every validator-permit holder, every watched hotkey and every childkey edge), per kind, from bittensor_subnet_changes_total.",
            Query(f'sum by (kind) (max by (netuid, kind) {events_in(SUBNET_CHANGES, "$__rate_interval")})', '{{kind}}'),
            width=12,
            height=9,
            style=Style(unit='short', decimals=0),
            bars=True,
            stacked=True,
            minimum=0,
        ),
        table_panel(
            'Changes in the time range',
            "Change events recorded per subnet and kind in the dashboard's time range (bittensor_subnet_changes_total). Per-validator changes of watched hotkeys: My validators.",
            ['netuid', 'kind'],
            [
                Column('changes', f'max by (netuid, kind) {events_in(SUBNET_CHANGES, "$__range")} > 0'),
            ],
            width=12,
            height=9,
            style=Style(decimals=0),
            sort_by=('changes', True),
        ),
    )
    board.row(
        'Subnets',
        table_panel(
            'Subnets',
            "Per subnet: MaxAllowedValidators, permits held, the permit cutoff (k-th strongest holder), the strongest uid without a permit, validators in scope with their stake weight, and child edges. Next epoch: its block and the time left (blocks x 12 s); permits changing at next epoch: validators in scope whose permit the next epoch changes by the chain's rule at this block's stake weights; changed by pending sets after: those whose permit at the epoch after next differs because of pending child sets due before the next epoch; metagraph difference: the largest difference (rao) from the chain's own numbers in 30 minutes (subnets of watched hotkeys only).",
            ['netuid'],
            [
                Column('max validators', 'max by (netuid) (bittensor_subnet_max_validators{netuid=~"$netuid", instance=~"$instance"})'),
                Column('permits', 'max by (netuid) (bittensor_subnet_validator_permits{netuid=~"$netuid", instance=~"$instance"})'),
                Column('permit cutoff (alpha)', 'max by (netuid) (bittensor_subnet_permit_cutoff_stake_weight_alpha{netuid=~"$netuid", instance=~"$instance"})', Style(unit='short')),
                Column('top contender (alpha)', 'max by (netuid) (bittensor_subnet_top_contender_stake_weight_alpha{netuid=~"$netuid", instance=~"$instance"})', Style(unit='short')),
                Column('validators in scope', 'count by (netuid) (max by (hotkey, netuid) (bittensor_validator_stake_weight_alpha{netuid=~"$netuid", instance=~"$instance"}))'),
                Column('stake weight (alpha)', 'sum by (netuid) (max by (hotkey, netuid) (bittensor_validator_stake_weight_alpha{netuid=~"$netuid", instance=~"$instance"}))', Style(unit='short')),
                Column('child edges', 'count by (netuid) (max by (parent_hotkey, child_hotkey, netuid) (bittensor_childkey_proportion_ratio{netuid=~"$netuid", instance=~"$instance"}))'),
                Column('next epoch', 'max by (netuid) (bittensor_subnet_next_epoch_block{netuid=~"$netuid", instance=~"$instance"})', Style(decimals=0)),
                Column('next epoch in', '(max by (netuid) (bittensor_subnet_next_epoch_block{netuid=~"$netuid", instance=~"$instance"}) - on() group_left() max(bittensor_chain_block{instance=~"$instance"})) * 12', Style(unit='s')),
                Column('permits changing at next epoch', 'count by (netuid) (max by (hotkey, netuid) (bittensor_validator_projected_permit{netuid=~"$netuid", instance=~"$instance"})) or on(netuid) max by (netuid) (bittensor_subnet_max_validators{netuid=~"$netuid", instance=~"$instance"}) * 0'),
                Column('changed by pending sets after', 'count by (netuid) (max by (hotkey, netuid) (bittensor_validator_projected_permit_after_pending{netuid=~"$netuid", instance=~"$instance"})) or on(netuid) max by (netuid) (bittensor_subnet_max_validators{netuid=~"$netuid", instance=~"$instance"}) * 0'),
                Column('metagraph difference (rao)', 'max by (netuid) (max_over_time(bittensor_subnet_metagraph_difference_rao{netuid=~"$netuid", instance=~"$instance"}[30m]))', Style(decimals=0)),
            ],
        ),
    )
    board.row(
        'Next epochs',
        table_panel(
            'Permit changes at the next epoch',
            "Validators in scope whose permit the next epoch changes, by the chain's rule at this block's stake weights (1 gains one, 0 loses it), with the subnet's next epoch.",
            ['hotkey', 'alias', 'netuid'],
            [
                Column('permit at next epoch', 'max by (hotkey, netuid) (bittensor_validator_projected_permit{netuid=~"$netuid", instance=~"$instance"}) * on(hotkey) group_left(alias) topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"}))', Style(unit='none', decimals=0, mappings={'0': ('no', 'red'), '1': ('yes', 'green')}, cell=True)),
                Column('next epoch (block)', '(max by (hotkey, netuid) (bittensor_validator_projected_permit{netuid=~"$netuid", instance=~"$instance"}) * 0 + on(netuid) group_left() max by (netuid) (bittensor_subnet_next_epoch_block{netuid=~"$netuid", instance=~"$instance"})) * on(hotkey) group_left(alias) topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"}))', Style(decimals=0)),
            ],
            width=12,
            height=8,
        ),
        table_panel(
            'Permit changes by pending child sets',
            "Validators in scope whose permit at the epoch after next differs from the next epoch's because of pending child sets that apply right after the next epoch: the parent whose set it is and why (cuts_it, raises_it: its own stake weight; lifts_contender, cuts_holder: another uid's), with that epoch's block.",
            ['hotkey', 'alias', 'netuid', 'parent_hotkey', 'reason'],
            [
                Column('permit after pending sets', 'max by (hotkey, netuid, parent_hotkey, reason) (bittensor_validator_projected_permit_after_pending{netuid=~"$netuid", instance=~"$instance"}) * on(hotkey) group_left(alias) topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"}))', Style(unit='none', decimals=0, mappings={'0': ('no', 'red'), '1': ('yes', 'green')}, cell=True)),
                Column('epoch after next (block)', '(max by (hotkey, netuid, parent_hotkey, reason) (bittensor_validator_projected_permit_after_pending{netuid=~"$netuid", instance=~"$instance"}) * 0 + on(netuid) group_left() max by (netuid) (bittensor_subnet_epoch_after_next_block{netuid=~"$netuid", instance=~"$instance"})) * on(hotkey) group_left(alias) topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"}))', Style(decimals=0)),
            ],
            width=12,
            height=8,
        ),
    )
    return board
