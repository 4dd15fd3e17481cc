"""Bittensor / My validators: Every watched hotkey (scope.watch) on every subnet in one table: stake weight, permit margin, take vs expected, parents and inherited stake, pending warnings and recent changes."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as models

from dashboards_src.board import Board, Stack, link, query_variable
from dashboards_src.panels import Column, Query, Style, graph_panel, histogram_panel, stat_panel, table_panel
from grafana_foundation_sdk.models.common import BigValueTextMode

NAME = BigValueTextMode.NAME
VALUE_AND_NAME = BigValueTextMode.VALUE_AND_NAME


def build() -> Board:
    board = Board(
        'bittensor-my-validators',
        'Bittensor / My validators',
        'Every watched hotkey (scope.watch) on every subnet in one table: stake weight, permit margin, take vs expected, parents and inherited stake, pending warnings and recent changes.',
        variables=[
            query_variable(
                'hotkey',
                'Validator',
                'query_result(max by (hotkey, alias) (bittensor_validator_info{watched="true", instance=~"$instance"}))',
                description='Watched hotkeys by alias (scope.watch).',
                regex='/(?:alias="(?<text>[^"]+)",)?hotkey="(?<value>[^"]+)"/',
                sort=models.VariableSort(1),
                multi=True,
                all_value='.*',
            ),
        ],
        links=[
            link('Validator detail', 'bittensor-validator-detail', 'The validator picked (first one if several), with this exporter selection', include_vars=True),
            link('Network overview', 'bittensor-network-overview', 'Every validator in scope', include_vars=True),
        ],
    )
    board.row(
        'Overview',
        stat_panel(
            'Watched validators',
            'Watched (hotkey, subnet) pairs in scope: every subnet where a hotkey of scope.watch is registered or has childkeys.',
            'count(max by (hotkey, netuid) (bittensor_validator_stake_weight_alpha{hotkey=~"$hotkey", instance=~"$instance"}) and on(hotkey) max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"})) or vector(0)',
            style=Style(decimals=0),
        ),
        stat_panel(
            'Permits held',
            "Watched pairs holding a validator permit from the subnet's last epoch.",
            'count(max by (hotkey, netuid) (bittensor_validator_permit{hotkey=~"$hotkey", instance=~"$instance"}) == 1 and on(hotkey) max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"})) or vector(0)',
            style=Style(decimals=0),
        ),
        stat_panel(
            'Permits at risk',
            "Watched permit holders within 5 % of (or below) what keeps the permit: the chain's StakeThreshold and, on a full subnet, the strongest uid without a permit (the alert BittensorValidatorPermitAtRisk).",
            'count((max by (hotkey, netuid) (bittensor_validator_stake_weight_alpha{hotkey=~"$hotkey", instance=~"$instance"}) and on(hotkey) max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"}) and on(hotkey, netuid) (max by (hotkey, netuid) (bittensor_validator_permit{hotkey=~"$hotkey", instance=~"$instance"}) == 1)) < on(netuid) group_left() (1.05 * max by (netuid) (label_replace(max by (netuid) (bittensor_subnet_top_contender_stake_weight_alpha{instance=~"$instance"}) and on(netuid) (max by (netuid) (bittensor_subnet_validator_permits{instance=~"$instance"}) >= on(netuid) max by (netuid) (bittensor_subnet_max_validators{instance=~"$instance"})), "bound", "top contender", "", "") or label_replace(max by (netuid) (bittensor_subnet_max_validators{instance=~"$instance"}) * 0 + scalar(max(bittensor_chain_stake_threshold_alpha{instance=~"$instance"})), "bound", "stake threshold", "", "")))) or vector(0)',
            style=Style(decimals=0, steps=[(None, 'green'), (1, 'red')]),
        ),
        stat_panel(
            'Pending warnings',
            'Pending child sets that cut or drop a watched validator as a child, plus pending revocations of all children scheduled by a watched parent.',
            '(sum(count by (hotkey, netuid) (label_replace(max by (parent_hotkey, child_hotkey, netuid) (bittensor_childkey_pending_proportion_change_ratio{child_hotkey=~"$hotkey", instance=~"$instance"}) < 0, "hotkey", "$1", "child_hotkey", "(.*)"))) or vector(0)) + (sum(count by (hotkey, netuid) (label_replace(max by (parent_hotkey, netuid) (bittensor_childkey_pending_children{parent_hotkey=~"$hotkey", instance=~"$instance"}) == 0, "hotkey", "$1", "parent_hotkey", "(.*)"))) or vector(0))',
            style=Style(decimals=0, steps=[(None, 'green'), (1, 'orange')]),
        ),
        stat_panel(
            'Watched hotkeys not found',
            'Hotkeys of scope.watch that hold no uid on any subnet and have no childkeys (a typo or a deregistered key): every per-validator alert for them is inert.',
            'count(max by (hotkey) (bittensor_watched_hotkey_found{hotkey=~"$hotkey", instance=~"$instance"}) == 0) or vector(0)',
            style=Style(decimals=0, steps=[(None, 'green'), (1, 'red')]),
        ),
        stat_panel(
            'Last change',
            'Chain time of the last change recorded for a watched validator (history).',
            'max(bittensor_validator_last_change_timestamp_seconds{hotkey=~"$hotkey", instance=~"$instance"}) * 1000',
            style=Style(unit='dateTimeFromNow'),
        ),
        table_panel(
            'My validators',
            "Every watched hotkey on every subnet where it is in scope. Permit margin: stake weight minus the larger of StakeThreshold and, on a full subnet, the strongest uid without a permit (below 0 the permit goes at the next epoch). Take vs the expected take of scope.watch. Parents and the alpha inherited from them. Pending cuts: child sets of its parents that cut or drop it; pending revocation: it scheduled the removal of all its children. Last change: the newest change recorded (history). Click a hotkey for its detail. Permit at next epoch: what the next epoch gives by the chain's rule at this block's stake weights; permit after pending sets: the epoch after, once the pending child sets due before the next epoch have applied; next epoch in: blocks left x 12 s.",
            ['hotkey', 'alias', 'netuid'],
            [
                Column('stake weight (alpha)', '(max by (hotkey, netuid) (bittensor_validator_stake_weight_alpha{hotkey=~"$hotkey", instance=~"$instance"}) and on(hotkey) max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"})) * on(hotkey) group_left(alias) topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"}))'),
                Column('permit', '(max by (hotkey, netuid) (bittensor_validator_permit{hotkey=~"$hotkey", instance=~"$instance"}) and on(hotkey, netuid) (max by (hotkey, netuid) (bittensor_validator_stake_weight_alpha{hotkey=~"$hotkey", instance=~"$instance"}) and on(hotkey) max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"}))) * on(hotkey) group_left(alias) topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"}))', Style(unit='none', decimals=0, mappings={'0': ('no', 'red'), '1': ('yes', 'green')}, cell=True)),
                Column('permit margin (alpha)', '((max by (hotkey, netuid) (bittensor_validator_stake_weight_alpha{hotkey=~"$hotkey", instance=~"$instance"}) and on(hotkey) max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"})) - on(netuid) group_left() max by (netuid) (label_replace(max by (netuid) (bittensor_subnet_top_contender_stake_weight_alpha{instance=~"$instance"}) and on(netuid) (max by (netuid) (bittensor_subnet_validator_permits{instance=~"$instance"}) >= on(netuid) max by (netuid) (bittensor_subnet_max_validators{instance=~"$instance"})), "bound", "top contender", "", "") or label_replace(max by (netuid) (bittensor_subnet_max_validators{instance=~"$instance"}) * 0 + scalar(max(bittensor_chain_stake_threshold_alpha{instance=~"$instance"})), "bound", "stake threshold", "", ""))) * on(hotkey) group_left(alias) topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"}))', Style(unit='short', steps=[(None, 'red'), (0, 'green')], cell=True)),
                Column('take', '(max by (hotkey, netuid) (bittensor_validator_childkey_take_ratio{hotkey=~"$hotkey", instance=~"$instance"}) and on(hotkey, netuid) (max by (hotkey, netuid) (bittensor_validator_stake_weight_alpha{hotkey=~"$hotkey", instance=~"$instance"}) and on(hotkey) max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"}))) * on(hotkey) group_left(alias) topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"}))', Style(unit='percentunit', decimals=2)),
                Column('expected take', '(max by (hotkey, netuid) (bittensor_validator_expected_childkey_take_ratio{hotkey=~"$hotkey", instance=~"$instance"}) and on(hotkey, netuid) (max by (hotkey, netuid) (bittensor_validator_stake_weight_alpha{hotkey=~"$hotkey", instance=~"$instance"}) and on(hotkey) max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"}))) * on(hotkey) group_left(alias) topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"}))', Style(unit='percentunit', decimals=2)),
                Column('parents', '(((count by (hotkey, netuid) (label_replace(max by (parent_hotkey, child_hotkey, netuid) (bittensor_childkey_proportion_ratio{child_hotkey=~"$hotkey", instance=~"$instance"}), "hotkey", "$1", "child_hotkey", "(.*)"))) and on(hotkey, netuid) (max by (hotkey, netuid) (bittensor_validator_stake_weight_alpha{hotkey=~"$hotkey", instance=~"$instance"}) and on(hotkey) max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"}))) or on(hotkey, netuid) ((max by (hotkey, netuid) (bittensor_validator_stake_weight_alpha{hotkey=~"$hotkey", instance=~"$instance"}) and on(hotkey) max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"})) * 0)) * on(hotkey) group_left(alias) topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"}))', Style(unit='none', decimals=0)),
                Column('from parents (alpha)', '(((max by (hotkey, netuid) (bittensor_validator_stake_from_parents_alpha{hotkey=~"$hotkey", instance=~"$instance"})) and on(hotkey, netuid) (max by (hotkey, netuid) (bittensor_validator_stake_weight_alpha{hotkey=~"$hotkey", instance=~"$instance"}) and on(hotkey) max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"}))) or on(hotkey, netuid) ((max by (hotkey, netuid) (bittensor_validator_stake_weight_alpha{hotkey=~"$hotkey", instance=~"$instance"}) and on(hotkey) max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"})) * 0)) * on(hotkey) group_left(alias) topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"}))'),
                Column('pending cuts', '(((count by (hotkey, netuid) (label_replace(max by (parent_hotkey, child_hotkey, netuid) (bittensor_childkey_pending_proportion_change_ratio{child_hotkey=~"$hotkey", instance=~"$instance"}) < 0, "hotkey", "$1", "child_hotkey", "(.*)"))) and on(hotkey, netuid) (max by (hotkey, netuid) (bittensor_validator_stake_weight_alpha{hotkey=~"$hotkey", instance=~"$instance"}) and on(hotkey) max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"}))) or on(hotkey, netuid) ((max by (hotkey, netuid) (bittensor_validator_stake_weight_alpha{hotkey=~"$hotkey", instance=~"$instance"}) and on(hotkey) max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"})) * 0)) * on(hotkey) group_left(alias) topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"}))', Style(unit='none', decimals=0, steps=[(None, 'green'), (1, 'orange')], cell=True)),
                Column('pending revocation', '(((count by (hotkey, netuid) (label_replace(max by (parent_hotkey, netuid) (bittensor_childkey_pending_children{parent_hotkey=~"$hotkey", instance=~"$instance"}) == 0, "hotkey", "$1", "parent_hotkey", "(.*)"))) and on(hotkey, netuid) (max by (hotkey, netuid) (bittensor_validator_stake_weight_alpha{hotkey=~"$hotkey", instance=~"$instance"}) and on(hotkey) max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"}))) or on(hotkey, netuid) ((max by (hotkey, netuid) (bittensor_validator_stake_weight_alpha{hotkey=~"$hotkey", instance=~"$instance"}) and on(hotkey) max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"})) * 0)) * on(hotkey) group_left(alias) topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"}))', Style(unit='none', decimals=0, steps=[(None, 'green'), (1, 'red')], cell=True)),
                Column('last change', '(max by (hotkey, netuid) (bittensor_validator_last_change_timestamp_seconds{hotkey=~"$hotkey", instance=~"$instance"}) * 1000 and on(hotkey, netuid) (max by (hotkey, netuid) (bittensor_validator_stake_weight_alpha{hotkey=~"$hotkey", instance=~"$instance"}) and on(hotkey) max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"}))) * on(hotkey) group_left(alias) topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"}))', Style(unit='dateTimeFromNow')),
                Column('permit at next epoch', '((max by (hotkey, netuid) (bittensor_validator_projected_permit{hotkey=~"$hotkey", instance=~"$instance"}) or on(hotkey, netuid) max by (hotkey, netuid) (bittensor_validator_permit{hotkey=~"$hotkey", instance=~"$instance"})) and on(hotkey, netuid) (max by (hotkey, netuid) (bittensor_validator_stake_weight_alpha{hotkey=~"$hotkey", instance=~"$instance"}) and on(hotkey) max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"}))) * on(hotkey) group_left(alias) topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"}))', Style(unit='none', decimals=0, mappings={'0': ('no', 'red'), '1': ('yes', 'green')}, cell=True)),
                Column('permit after pending sets', '((max by (hotkey, netuid) (bittensor_validator_projected_permit_after_pending{hotkey=~"$hotkey", instance=~"$instance"}) or on(hotkey, netuid) max by (hotkey, netuid) (bittensor_validator_projected_permit{hotkey=~"$hotkey", instance=~"$instance"}) or on(hotkey, netuid) max by (hotkey, netuid) (bittensor_validator_permit{hotkey=~"$hotkey", instance=~"$instance"})) and on(hotkey, netuid) (max by (hotkey, netuid) (bittensor_validator_stake_weight_alpha{hotkey=~"$hotkey", instance=~"$instance"}) and on(hotkey) max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"}))) * on(hotkey) group_left(alias) topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"}))', Style(unit='none', decimals=0, mappings={'0': ('no', 'red'), '1': ('yes', 'green')}, cell=True)),
                Column('next epoch in', '(((max by (hotkey, netuid) (bittensor_validator_stake_weight_alpha{hotkey=~"$hotkey", instance=~"$instance"}) and on(hotkey) max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"})) * 0) + on(netuid) group_left() (max by (netuid) (bittensor_subnet_next_epoch_block{instance=~"$instance"}) - on() group_left() max(bittensor_chain_block{instance=~"$instance"})) * 12) * on(hotkey) group_left(alias) topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"}))', Style(unit='s')),
            ],
            width=24,
            height=9,
            style=Style(unit='short'),
            sort_by=('alias', False),
            label_styles={'hotkey': Style(links=[('Validator detail', '/d/bittensor-validator-detail/bittensor-validator-detail?${datasource:queryparam}&${instance:queryparam}&var-hotkey=${__data.fields["hotkey"]}&var-netuid=${__data.fields["netuid"]}&${__url_time_range}')])},
        ),
    )
    board.row(
        'Stake weight',
        graph_panel(
            'Stake weight',
            'Stake weight of each watched validator per subnet.',
            Query('(max by (hotkey, netuid) (bittensor_validator_stake_weight_alpha{hotkey=~"$hotkey", instance=~"$instance"}) and on(hotkey) max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"})) * on(hotkey) group_left(alias) topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"}))', '{{alias}} subnet {{netuid}}'),
            style=Style(unit='short'),
            axis_label='alpha',
        ),
        graph_panel(
            'Permit margin',
            'Stake weight minus what keeps the permit (the larger of StakeThreshold and, on a full subnet, the strongest uid without a permit). Below 0 the permit goes at the next epoch.',
            Query('((max by (hotkey, netuid) (bittensor_validator_stake_weight_alpha{hotkey=~"$hotkey", instance=~"$instance"}) and on(hotkey) max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"})) - on(netuid) group_left() max by (netuid) (label_replace(max by (netuid) (bittensor_subnet_top_contender_stake_weight_alpha{instance=~"$instance"}) and on(netuid) (max by (netuid) (bittensor_subnet_validator_permits{instance=~"$instance"}) >= on(netuid) max by (netuid) (bittensor_subnet_max_validators{instance=~"$instance"})), "bound", "top contender", "", "") or label_replace(max by (netuid) (bittensor_subnet_max_validators{instance=~"$instance"}) * 0 + scalar(max(bittensor_chain_stake_threshold_alpha{instance=~"$instance"})), "bound", "stake threshold", "", ""))) * on(hotkey) group_left(alias) topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"}))', '{{alias}} subnet {{netuid}}'),
            style=Style(unit='short', steps=[(None, 'red'), (0, 'green')]),
            axis_label='alpha',
            threshold_lines=True,
        ),
    )
    board.row(
        'Pending child sets',
        table_panel(
            'Pending child sets that change my validators',
            "Child sets scheduled by a parent that change the proportion of a watched validator when they apply: pending minus current proportion (negative: cut; minus the current proportion: dropped; positive: raised or added), and the block after which the set applies (at the subnet's first epoch after it). The parent can still replace the set before then.",
            ['child_alias', 'child_hotkey', 'netuid', 'parent_hotkey', 'parent_alias'],
            [
                Column('change', '(((max by (parent_hotkey, child_hotkey, netuid) (bittensor_childkey_pending_proportion_change_ratio{child_hotkey=~"$hotkey", instance=~"$instance"}) and on(child_hotkey) label_replace(max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"}), "child_hotkey", "$1", "hotkey", "(.*)")) * on(child_hotkey) group_left(child_alias) label_replace(label_replace(topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"})), "child_hotkey", "$1", "hotkey", "(.*)"), "child_alias", "$1", "alias", "(.*)")) * on(parent_hotkey) group_left(parent_alias) label_replace(label_replace(topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"})), "parent_hotkey", "$1", "hotkey", "(.*)"), "parent_alias", "$1", "alias", "(.*)")) or on(parent_hotkey, child_hotkey, netuid, child_alias) ((max by (parent_hotkey, child_hotkey, netuid) (bittensor_childkey_pending_proportion_change_ratio{child_hotkey=~"$hotkey", instance=~"$instance"}) and on(child_hotkey) label_replace(max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"}), "child_hotkey", "$1", "hotkey", "(.*)")) * on(child_hotkey) group_left(child_alias) label_replace(label_replace(topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"})), "child_hotkey", "$1", "hotkey", "(.*)"), "child_alias", "$1", "alias", "(.*)"))', Style(steps=[(None, 'red'), (0, 'green')], cell=True)),
                Column('applies after block', '((((max by (parent_hotkey, child_hotkey, netuid) (bittensor_childkey_pending_proportion_change_ratio{child_hotkey=~"$hotkey", instance=~"$instance"}) and on(child_hotkey) label_replace(max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"}), "child_hotkey", "$1", "hotkey", "(.*)")) * on(child_hotkey) group_left(child_alias) label_replace(label_replace(topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"})), "child_hotkey", "$1", "hotkey", "(.*)"), "child_alias", "$1", "alias", "(.*)")) * 0 + on(parent_hotkey, netuid) group_left() max by (parent_hotkey, netuid) (bittensor_childkey_pending_cooldown_block{instance=~"$instance"})) * on(parent_hotkey) group_left(parent_alias) label_replace(label_replace(topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"})), "parent_hotkey", "$1", "hotkey", "(.*)"), "parent_alias", "$1", "alias", "(.*)")) or on(parent_hotkey, child_hotkey, netuid, child_alias) (((max by (parent_hotkey, child_hotkey, netuid) (bittensor_childkey_pending_proportion_change_ratio{child_hotkey=~"$hotkey", instance=~"$instance"}) and on(child_hotkey) label_replace(max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"}), "child_hotkey", "$1", "hotkey", "(.*)")) * on(child_hotkey) group_left(child_alias) label_replace(label_replace(topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"})), "child_hotkey", "$1", "hotkey", "(.*)"), "child_alias", "$1", "alias", "(.*)")) * 0 + on(parent_hotkey, netuid) group_left() max by (parent_hotkey, netuid) (bittensor_childkey_pending_cooldown_block{instance=~"$instance"}))', Style(unit='none', decimals=0)),
                Column('blocks to go', '(((((max by (parent_hotkey, child_hotkey, netuid) (bittensor_childkey_pending_proportion_change_ratio{child_hotkey=~"$hotkey", instance=~"$instance"}) and on(child_hotkey) label_replace(max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"}), "child_hotkey", "$1", "hotkey", "(.*)")) * on(child_hotkey) group_left(child_alias) label_replace(label_replace(topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"})), "child_hotkey", "$1", "hotkey", "(.*)"), "child_alias", "$1", "alias", "(.*)")) * 0 + on(parent_hotkey, netuid) group_left() max by (parent_hotkey, netuid) (bittensor_childkey_pending_cooldown_block{instance=~"$instance"})) - scalar(max(bittensor_chain_block{instance=~"$instance"}))) * on(parent_hotkey) group_left(parent_alias) label_replace(label_replace(topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"})), "parent_hotkey", "$1", "hotkey", "(.*)"), "parent_alias", "$1", "alias", "(.*)")) or on(parent_hotkey, child_hotkey, netuid, child_alias) ((((max by (parent_hotkey, child_hotkey, netuid) (bittensor_childkey_pending_proportion_change_ratio{child_hotkey=~"$hotkey", instance=~"$instance"}) and on(child_hotkey) label_replace(max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"}), "child_hotkey", "$1", "hotkey", "(.*)")) * on(child_hotkey) group_left(child_alias) label_replace(label_replace(topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"})), "child_hotkey", "$1", "hotkey", "(.*)"), "child_alias", "$1", "alias", "(.*)")) * 0 + on(parent_hotkey, netuid) group_left() max by (parent_hotkey, netuid) (bittensor_childkey_pending_cooldown_block{instance=~"$instance"})) - scalar(max(bittensor_chain_block{instance=~"$instance"})))', Style(unit='none', decimals=0)),
            ],
            width=14,
            height=8,
            style=Style(unit='percentunit'),
            sort_by=('change', False),
            label_styles={'child_hotkey': Style(links=[('Validator detail', '/d/bittensor-validator-detail/bittensor-validator-detail?${datasource:queryparam}&${instance:queryparam}&var-hotkey=${__data.fields["hotkey"]}&var-netuid=${__data.fields["netuid"]}&${__url_time_range}')]), 'parent_hotkey': Style(links=[('Validator detail', '/d/bittensor-validator-detail/bittensor-validator-detail?${datasource:queryparam}&${instance:queryparam}&var-hotkey=${__data.fields["parent"]}&var-netuid=${__data.fields["netuid"]}&${__url_time_range}')])},
            renames={"child_alias": "validator", "child_hotkey": "hotkey", "parent_hotkey": "parent", "parent_alias": "parent alias"},
        ),
        table_panel(
            'Pending child sets of my validators',
            'Child sets a watched hotkey scheduled as a parent: how many children the set has (0: the revocation of all its children) and the block after which it applies.',
            ['parent_alias', 'parent_hotkey', 'netuid'],
            [
                Column('children', '(max by (parent_hotkey, netuid) (bittensor_childkey_pending_children{parent_hotkey=~"$hotkey", instance=~"$instance"}) and on(parent_hotkey) label_replace(max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"}), "parent_hotkey", "$1", "hotkey", "(.*)")) * on(parent_hotkey) group_left(parent_alias) label_replace(label_replace(topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"})), "parent_hotkey", "$1", "hotkey", "(.*)"), "parent_alias", "$1", "alias", "(.*)")', Style(mappings={'0': ('0 (revocation)', 'red')}, cell=True)),
                Column('applies after block', '(max by (parent_hotkey, netuid) (bittensor_childkey_pending_cooldown_block{parent_hotkey=~"$hotkey", instance=~"$instance"}) and on(parent_hotkey) label_replace(max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"}), "parent_hotkey", "$1", "hotkey", "(.*)")) * on(parent_hotkey) group_left(parent_alias) label_replace(label_replace(topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"})), "parent_hotkey", "$1", "hotkey", "(.*)"), "parent_alias", "$1", "alias", "(.*)")'),
                Column('blocks to go', '((max by (parent_hotkey, netuid) (bittensor_childkey_pending_cooldown_block{parent_hotkey=~"$hotkey", instance=~"$instance"}) and on(parent_hotkey) label_replace(max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"}), "parent_hotkey", "$1", "hotkey", "(.*)")) - scalar(max(bittensor_chain_block{instance=~"$instance"}))) * on(parent_hotkey) group_left(parent_alias) label_replace(label_replace(topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"})), "parent_hotkey", "$1", "hotkey", "(.*)"), "parent_alias", "$1", "alias", "(.*)")'),
            ],
            width=10,
            height=8,
            style=Style(unit='none', decimals=0),
            sort_by=('children', False),
            label_styles={'parent_hotkey': Style(links=[('Validator detail', '/d/bittensor-validator-detail/bittensor-validator-detail?${datasource:queryparam}&${instance:queryparam}&var-hotkey=${__data.fields["hotkey"]}&var-netuid=${__data.fields["netuid"]}&${__url_time_range}')])},
            renames={"parent_alias": "validator", "parent_hotkey": "hotkey"},
        ),
    )
    board.row(
        'Changes',
        table_panel(
            'Recent changes',
            'The last recorded change of each kind for each watched validator: chain time and block (from the history database, so it survives restarts).',
            ['alias', 'hotkey', 'netuid', 'kind', 'cause'],
            [
                Column('time', '(max by (hotkey, netuid, kind) (bittensor_validator_last_change_timestamp_seconds{hotkey=~"$hotkey", instance=~"$instance"}) * 1000) * on(hotkey) group_left(alias) topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"}))', Style(unit='dateTimeAsIso')),
                Column('block', '((max by (hotkey, netuid, kind, cause) (bittensor_validator_last_change_cause_info{hotkey=~"$hotkey", instance=~"$instance"}) * on(hotkey, netuid, kind) group_left max by (hotkey, netuid, kind) (bittensor_validator_last_change_block{hotkey=~"$hotkey", instance=~"$instance"})) or on(hotkey, netuid, kind) max by (hotkey, netuid, kind) (bittensor_validator_last_change_block{hotkey=~"$hotkey", instance=~"$instance"})) * on(hotkey) group_left(alias) topk by (hotkey) (1, max by (hotkey, alias) (bittensor_validator_info{instance=~"$instance"}))'),
            ],
            style=Style(unit='none', decimals=0),
            sort_by=('time', True),
            label_styles={'hotkey': Style(links=[('Validator detail', '/d/bittensor-validator-detail/bittensor-validator-detail?${datasource:queryparam}&${instance:queryparam}&var-hotkey=${__data.fields["hotkey"]}&var-netuid=${__data.fields["netuid"]}&${__url_time_range}')])},
        ),
    )
    board.row(
        'Next epochs',
        stat_panel(
            'Permits lost at the next epoch',
            "Watched (hotkey, subnet) pairs the next epoch would take the permit from, by the chain's rule at this block's stake weights (bittensor_validator_projected_permit == 0).",
            'count(max by (hotkey, netuid) (bittensor_validator_projected_permit{hotkey=~"$hotkey", instance=~"$instance"}) == 0 and on(hotkey) max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"})) or vector(0)',
            width=5,
            height=4,
            style=Style(decimals=0, steps=[(None, 'green'), (1, 'red')]),
        ),
        stat_panel(
            'Permits gained at the next epoch',
            'Watched pairs the next epoch would give a permit they do not hold (bittensor_validator_projected_permit == 1).',
            'count(max by (hotkey, netuid) (bittensor_validator_projected_permit{hotkey=~"$hotkey", instance=~"$instance"}) == 1 and on(hotkey) max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"})) or vector(0)',
            width=5,
            height=4,
            style=Style(decimals=0),
        ),
        stat_panel(
            'Permits lost to pending child sets',
            'Watched pairs whose permit a pending child set takes at the epoch after next: the set applies right after the next epoch (bittensor_validator_projected_permit_after_pending == 0; the alert names the parent).',
            'count(max by (hotkey, netuid) (bittensor_validator_projected_permit_after_pending{hotkey=~"$hotkey", instance=~"$instance"}) == 0 and on(hotkey) max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"})) or vector(0)',
            width=5,
            height=4,
            style=Style(decimals=0, steps=[(None, 'green'), (1, 'red')]),
        ),
        stat_panel(
            'Permits gained by pending child sets',
            'Watched pairs a pending child set gives a permit at the epoch after next (bittensor_validator_projected_permit_after_pending == 1).',
            'count(max by (hotkey, netuid) (bittensor_validator_projected_permit_after_pending{hotkey=~"$hotkey", instance=~"$instance"}) == 1 and on(hotkey) max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"})) or vector(0)',
            width=5,
            height=4,
            style=Style(decimals=0),
        ),
        table_panel(
            'Next epochs of my subnets',
            "Each subnet a watched validator is on: the next epoch's block and the time left (blocks x 12 s), and where pending child sets change a permit, the epoch after next, the first that counts them.",
            ['netuid'],
            [
                Column('next epoch (block)', 'max by (netuid) (bittensor_subnet_next_epoch_block{instance=~"$instance"}) and on(netuid) max by (netuid) ((max by (hotkey, netuid) (bittensor_validator_stake_weight_alpha{hotkey=~"$hotkey", instance=~"$instance"}) and on(hotkey) max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"})))', Style(decimals=0)),
                Column('next epoch in', '(max by (netuid) (bittensor_subnet_next_epoch_block{instance=~"$instance"}) - on() group_left() max(bittensor_chain_block{instance=~"$instance"})) * 12 and on(netuid) max by (netuid) ((max by (hotkey, netuid) (bittensor_validator_stake_weight_alpha{hotkey=~"$hotkey", instance=~"$instance"}) and on(hotkey) max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"})))', Style(unit='s')),
                Column('epoch after next, with pending sets (block)', 'max by (netuid) (bittensor_subnet_epoch_after_next_block{instance=~"$instance"}) and on(netuid) max by (netuid) ((max by (hotkey, netuid) (bittensor_validator_stake_weight_alpha{hotkey=~"$hotkey", instance=~"$instance"}) and on(hotkey) max by (hotkey) (bittensor_validator_info{watched="true", hotkey=~"$hotkey", instance=~"$instance"})))', Style(decimals=0)),
            ],
            width=14,
            height=8,
        ),
    )
    return board
