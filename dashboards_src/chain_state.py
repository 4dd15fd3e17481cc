"""The chain's unusual states: the Chain state row of Network overview, and the column of My
validators that says a watched validator's subnet has one.

The exporter flags the states real storage can hold but the chain's write paths would not make
(`bittensor_chain_anomalous_entries{rule, netuid}`, docs/chain-states.md) and the subnets being
dissolved (`bittensor_subnet_dissolving{netuid}`, docs/dissolution.md). Both are empty while the
chain is as its write paths leave it: that normal state reads "none", not "No data".
"""

from __future__ import annotations

from dashboards_src.panels import Column, Style, table_panel
from dashboards_src.promql import WATCHED_PAIRS, select

ANOMALOUS = "bittensor_chain_anomalous_entries"
NONE = "none"
A_SUBNET, CHAIN_WIDE = 'netuid!=""', 'netuid=""'
# Anomalies the warning alert (BittensorChainStateAffectsStake) fires on: they change stake weights,
# margins or permits; the others (BittensorChainStateUnusual, info) bound a take or a pending set, no stake number.
AFFECTS_STAKE = "orange"
INFORMS = "blue"
# What each rule means, in a table cell (docs/chain-states.md has why the chain can hold it and what to do).
MEANINGS = {
    "take_above_max": ("takes stored above MaxChildkeyTake (the bound was lowered): paid whole, never capped", INFORMS),
    "min_take_above_max": ("a take minimum above MaxChildkeyTake: every take here is at least that minimum", INFORMS),
    "parents_do_not_mirror_children": ("edges ChildKeys and ParentKeys do not both list: each side is read on its own",
                                       AFFECTS_STAKE),
    "duplicate_parent": ("a parent listed twice in ParentKeys: the child receives its share once per entry", AFFECTS_STAKE),
    "pending_self_or_duplicate": ("pending sets naming their parent or a child twice: applied without the parent, "
                                  "a duplicate's last entry kept", INFORMS),
    "permit_without_hotkey": ("permitted uids without a hotkey: they weigh 0 and lose the permit at the next epoch",
                              AFFECTS_STAKE),
    "duplicate_hotkey": ("a hotkey on two uids: the chain skips the subnet's epochs, permits stay as they are",
                         AFFECTS_STAKE),
}

# Entries by (rule, netuid) for the subnets picked and the chain-wide ones (netuid ""); an HA pair
# counts once.
PICKED_OR_CHAIN_WIDE = 'netuid=~"$netuid|"'
ANOMALIES = f"max by (rule, netuid) ({select(ANOMALOUS, PICKED_OR_CHAIN_WIDE)})"
# The subnets being dissolved, every one: a dissolved subnet is no longer offered by the subnet picker.
DISSOLVING = f"max by (netuid) ({select('bittensor_subnet_dissolving')})"


def anomalies_table():
    shown = f'label_replace(label_replace({ANOMALIES}, "netuid", "chain-wide", "netuid", ""), "meaning", "$1", "rule", "(.*)")'
    return table_panel(
        "Unusual chain states",
        "States the chain's storage holds but its write paths would not make (bittensor_chain_anomalous_entries): "
        "the rule, the subnet (chain-wide: not a subnet's), what it means and the entries found, present while the "
        "state lasts. The numbers of every panel are published as the chain computes them from this state. Orange: "
        "stake weights, margins or permits rest on it (alert BittensorChainStateAffectsStake after 10 minutes); blue: "
        "a take's bound or a pending set, nothing else (BittensorChainStateUnusual, info). take_above_max: takes "
        "stored above MaxChildkeyTake, which the chain pays whole; min_take_above_max: a take minimum above the "
        "maximum; parents_do_not_mirror_children: edges only one of ChildKeys and ParentKeys lists (a parent can "
        "repair it by scheduling its child set again); duplicate_parent: a parent listed twice in a ParentKeys list; "
        "pending_self_or_duplicate: pending child sets naming their parent or a child twice; permit_without_hotkey: "
        "permitted uids without a hotkey; duplicate_hotkey: a hotkey on two uids, so the chain skips the subnet's "
        "epochs. Why the chain can hold each and what to do: docs/chain-states.md. None is the normal state.",
        ["rule", "netuid", "meaning"],
        [Column("entries", shown)],
        width=16, height=6, style=Style(decimals=0, no_value=NONE), sort_by=("entries", True),
        label_styles={"meaning": Style(mappings=MEANINGS, cell=True)},
        renames={"meaning": "what it means"},
    )


def dissolving_table():
    # A table (an instant query), not a stat: a stat's last value over the time range would still show a
    # subnet whose cleanup finished hours ago.
    return table_panel(
        "Subnets being dissolved",
        "Subnets out of NetworksAdded whose storage the chain is still deleting, phase by phase "
        "(bittensor_subnet_dissolving; docs/dissolution.md). Nothing of them is exported any more: their validators, "
        "edges, pending child sets and subnet numbers left every panel at the first refresh after NetworkRemoved, all "
        "at once. History recorded what each took from the validators it tracks (kind subnet_dissolved and the "
        "permits, edges and pending sets lost, cause NetworkRemoved: Changes in the time range with all subnets "
        "picked, and My validators' Last changes). Every subnet being dissolved shows, whatever subnets are picked. None is the normal state.",
        ["netuid"],
        [Column("state", DISSOLVING, Style(mappings={"1": ("being dissolved", "orange")}, cell=True))],
        width=8, height=6, style=Style(no_value=NONE),
    )


def panels() -> list:
    """The Chain state row of Network overview."""
    return [anomalies_table(), dissolving_table()]


def on_watched_subnets() -> str:
    """Anomalous entries on the subnet of each watched pair picked, plus the chain-wide ones (they bound
    every subnet's takes); 0 where there are none."""
    by_subnet = f"sum by (netuid) (max by (rule, netuid) ({select(ANOMALOUS, A_SUBNET)}))"
    chain_wide = f"(sum(max by (rule) ({select(ANOMALOUS, CHAIN_WIDE)})) or vector(0))"
    return (f"(({WATCHED_PAIRS} * 0 + on(netuid) group_left() {by_subnet}) or on(hotkey, netuid) {WATCHED_PAIRS} * 0) "
            f"+ on() group_left() {chain_wide}")
