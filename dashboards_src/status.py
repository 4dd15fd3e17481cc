"""The "am I OK" panels: a status per watched validator, the firing alerts, the permit-loss
projections and the last changes, each over the watched hotkeys picked (`$hotkey`).

Status of a hotkey, the worst that applies (one number, shown as text):
  4 stale data       the newest refresh of the exporters picked is older than 10 minutes, or the
                     hotkey's series are gone from the exporters (withdrawn for staleness)
  3 inactive         on a subnet where it holds a permit, its last weight set is past the activity
                     cutoff (the next epoch marks it inactive) or the chain marked it inactive: it
                     earns no validator dividends there
  2 at risk          a permit within 5 % of what keeps it, a permit the next epoch or pending child
                     sets take away, weights not set for more than half the activity cutoff, a
                     pending child set that cuts or drops it, its own pending revocation, a take
                     that differs from the expected one, a firing warning or critical alert about
                     it, or the hotkey not found on the chain
  1 changed recently a change of any kind (stake moves included) recorded within the last hour
  0 OK
"""

from __future__ import annotations

from dashboards_src.board import detail_url, field
from dashboards_src.panels import Column, Style, stat_panel, table_panel
from dashboards_src.promql import (
    ALERTS_BY_SEVERITY, AT_RISK, INACTIVE, LOSS_AFTER_PENDING, LOSS_NEXT_EPOCH, PENDING_CUTS, PENDING_REVOCATIONS,
    PICKED, RECENT_SECONDS, SERIOUS_ALERTS, STALE_SECONDS, TAKE_UNEXPECTED, WATCHED_BLOCKS_SINCE_WEIGHTS, WATCHED_PAIRS,
    WEIGHTS_STALE, holding_permit, per_pair, select, share_of_cutoff, watched, with_alias,
)

OK, CHANGED, AT_RISK_LEVEL, INACTIVE_LEVEL, STALE = 0, 1, 2, 3, 4
STATUS_TEXT = {
    str(OK): ("OK", "green"), str(CHANGED): ("changed recently", "blue"),
    str(AT_RISK_LEVEL): ("at risk", "red"), str(INACTIVE_LEVEL): ("inactive", "dark-red"),
    str(STALE): ("stale data", "purple"),
}
_FOUND = "bittensor_watched_hotkey_found"
# Every watched hotkey picked that an exporter listed in the last hour, by hotkey: a hotkey whose
# series were withdrawn stays listed (as stale data) instead of vanishing from the table.
LISTED = f"max by (hotkey) (last_over_time({select(_FOUND, PICKED)}[1h]))"
# One alias per listed hotkey, for `+ on(hotkey) group_left(alias)`.
LISTED_ALIASES = f"topk by (hotkey) (1, max by (hotkey, alias) (last_over_time({select(_FOUND, PICKED)}[1h])))"
NEWEST_REFRESH = f"max({select('bittensor_exporter_last_refresh_success_timestamp_seconds')})"
DATA_AGE = f"time() - {NEWEST_REFRESH}"
LAST_CHANGE = f"max by (hotkey) ({select('bittensor_validator_last_change_timestamp_seconds', PICKED)})"

STALE_HOTKEYS = (f"(({LISTED} and on() ({DATA_AGE} > {STALE_SECONDS})) "
                 f"or ({LISTED} unless on(hotkey) max by (hotkey) ({select(_FOUND, PICKED)})))")
RISKY_HOTKEYS = " or ".join([
    *(f"count by (hotkey) ({expr})" for expr in
      (AT_RISK, LOSS_NEXT_EPOCH, LOSS_AFTER_PENDING, WEIGHTS_STALE, PENDING_CUTS, PENDING_REVOCATIONS, TAKE_UNEXPECTED,
       SERIOUS_ALERTS)),
    f"(max by (hotkey) ({select(_FOUND, PICKED)}) == 0)",
])
INACTIVE_HOTKEYS = f"count by (hotkey) ({INACTIVE})"
CHANGED_HOTKEYS = f"(time() - {LAST_CHANGE} < {RECENT_SECONDS})"
STATUS = (
    "max by (hotkey) ("
    f'label_replace({LISTED} * 0 + {OK}, "level", "ok", "", "")'
    f' or label_replace({CHANGED_HOTKEYS} * 0 + {CHANGED}, "level", "changed", "", "")'
    f' or label_replace(({RISKY_HOTKEYS}) * 0 + {AT_RISK_LEVEL}, "level", "risk", "", "")'
    f' or label_replace({INACTIVE_HOTKEYS} * 0 + {INACTIVE_LEVEL}, "level", "inactive", "", "")'
    f' or label_replace({STALE_HOTKEYS} * 0 + {STALE}, "level", "stale", "", "")) '
    # only the listed hotkeys: an alert about an exporter has hotkey=""
    f"and on(hotkey) {LISTED}"
)


def per_hotkey(expr: str) -> str:
    """``expr`` (by hotkey) for every listed hotkey, 0 where it has none, with the alias."""
    return f"(({expr}) or {LISTED} * 0) + on(hotkey) group_left(alias) ({LISTED_ALIASES} * 0)"


def count_of(*exprs: str) -> str:
    """How many series ``exprs`` have together, by hotkey (0 where none)."""
    return " + ".join(f"(count by (hotkey) ({e}) or {LISTED} * 0)" for e in exprs)


def of_listed(expr: str) -> str:
    """``expr`` (by hotkey) with the alias, no value where it has none (an empty cell, not 0)."""
    return f"({expr}) + on(hotkey) group_left(alias) ({LISTED_ALIASES} * 0)"


# Per hotkey, over the subnets where it holds a permit: the stalest weights (blocks, and share of
# the subnet's cutoff), the lowest vtrust, the lowest dividend share for its stake share.
STALEST_WEIGHTS = f"max by (hotkey) ({WATCHED_BLOCKS_SINCE_WEIGHTS})"
STALEST_SHARE_OF_CUTOFF = f"max by (hotkey) ({share_of_cutoff(WATCHED_BLOCKS_SINCE_WEIGHTS)})"
LOWEST_VTRUST = f"min by (hotkey) ({holding_permit(watched(per_pair('bittensor_validator_trust_ratio')), PICKED)})"
# Dividend share over stake share: 1 earns as its stake weighs, below 0.8 BittensorValidatorDividendsBelowStakeShare
# (after 4 hours). Pairs without stake share (0 at the last epoch) have no ratio.
DIVIDENDS_FOR_STAKE = holding_permit(watched(
    f"({per_pair('bittensor_validator_dividends_ratio')} / on(hotkey, netuid) "
    f"({per_pair('bittensor_validator_stake_share_ratio')} > 0))"), PICKED)
LOWEST_DIVIDENDS_FOR_STAKE = f"min by (hotkey) ({DIVIDENDS_FOR_STAKE})"
WEIGHT_STEPS = [(None, "green"), (0.5, "red"), (1, "dark-red")]
DIVIDEND_STEPS = [(None, "red"), (0.8, "green")]


def _detail_link(hotkey_column: str, netuid_column: str = "") -> Style:
    return Style(links=[("Validator detail", detail_url(field(hotkey_column), field(netuid_column) if netuid_column else ""))])


RED_FROM_1 = [(None, "green"), (1, "red")]


def overview_stats() -> list:
    return [
        stat_panel("Watched validators", "Watched hotkeys picked (scope.watch), on however many subnets.",
                   f"count({LISTED}) or vector(0)", style=Style(decimals=0)),
        stat_panel("At risk or stale", "Watched hotkeys whose status (table Status) is at risk, inactive or stale data.",
                   f"count(({STATUS}) >= {AT_RISK_LEVEL}) or vector(0)", style=Style(decimals=0, steps=RED_FROM_1)),
        stat_panel("Alerts firing", "Warning and critical Bittensor alerts firing about the watched validators picked, "
                   "or about the exporters and the chain (table Firing alerts).",
                   f"count({SERIOUS_ALERTS}) or vector(0)", style=Style(decimals=0, steps=RED_FROM_1)),
        stat_panel("Permit losses projected", "Watched (hotkey, subnet) pairs whose permit the next epoch takes away, or "
                   "pending child sets take at the epoch after next (table Permit-loss projections).",
                   f"(count({LOSS_NEXT_EPOCH}) or vector(0)) + (count({LOSS_AFTER_PENDING}) or vector(0))",
                   style=Style(decimals=0, steps=RED_FROM_1)),
        stat_panel("Pending warnings", "Pending child sets that cut or drop a watched validator picked, as a child, plus "
                   "pending revocations of all children scheduled by a watched validator picked.",
                   f"(count({PENDING_CUTS}) or vector(0)) + (count({PENDING_REVOCATIONS}) or vector(0))",
                   style=Style(decimals=0, steps=[(None, "green"), (1, "orange")])),
        stat_panel("Data age", "Since the newest successful chain read of the exporters picked; over 10 minutes the "
                   "status of every validator is stale data.",
                   DATA_AGE, style=Style(unit="s", decimals=0, steps=[(None, "green"), (180, "orange"), (STALE_SECONDS, "red")])),
    ]


def status_table(width: int, height: int):
    red_from_1 = Style(decimals=0, steps=RED_FROM_1, cell=True)
    return table_panel(
        "Status",
        "One row per watched hotkey picked, however many subnets it is on: its status (stale data, inactive, at risk, "
        "changed recently or OK; the worst that applies), whether the chain knows it, the subnets and permits, and what "
        "makes it at risk: permits within 5 % of what keeps them, permits projected lost (next epoch and pending child "
        "sets), pending cuts and revocations, firing warning or critical alerts. Is it working and earning, over the "
        "subnets where it holds a permit: blocks since its stalest weight set and that as a share of the subnet's "
        "activity cutoff (past half: at risk; past the cutoff the next epoch marks it inactive), subnets where it is "
        "inactive (past the cutoff or marked so by the last epoch: no validator dividends there), its lowest vtrust, and "
        "its lowest dividend share over stake share (100 %: it earns as its stake weighs; below 80 % for 4 hours: "
        "BittensorValidatorDividendsBelowStakeShare). Click a hotkey for its detail.",
        ["alias", "hotkey"],
        [
            Column("status", per_hotkey(STATUS), Style(mappings=STATUS_TEXT, cell=True)),
            Column("found", per_hotkey(f"max by (hotkey) ({select(_FOUND, PICKED)})"),
                   Style(mappings={"0": ("not found", "red"), "1": ("yes", "green")}, cell=True)),
            Column("subnets", per_hotkey(count_of(WATCHED_PAIRS)), Style(decimals=0)),
            Column("permits", per_hotkey(count_of(f"{WATCHED_PAIRS} and on(hotkey, netuid) ({per_pair('bittensor_validator_permit')} == 1)")),
                   Style(decimals=0)),
            Column("at risk", per_hotkey(count_of(AT_RISK)), red_from_1),
            Column("losses projected", per_hotkey(count_of(LOSS_NEXT_EPOCH, LOSS_AFTER_PENDING)), red_from_1),
            Column("pending warnings", per_hotkey(count_of(PENDING_CUTS, PENDING_REVOCATIONS)),
                   Style(decimals=0, steps=[(None, "green"), (1, "orange")], cell=True)),
            Column("alerts", per_hotkey(count_of(SERIOUS_ALERTS)), red_from_1),
            Column("blocks since weights", of_listed(STALEST_WEIGHTS), Style(unit="none", decimals=0)),
            Column("of cutoff", of_listed(STALEST_SHARE_OF_CUTOFF), Style(unit="percentunit", decimals=0, steps=WEIGHT_STEPS, cell=True)),
            Column("inactive", per_hotkey(count_of(INACTIVE)), Style(decimals=0, steps=[(None, "green"), (1, "dark-red")], cell=True)),
            Column("vtrust (lowest)", of_listed(LOWEST_VTRUST), Style(unit="percentunit", decimals=1)),
            Column("dividends / stake share (lowest)", of_listed(LOWEST_DIVIDENDS_FOR_STAKE),
                   Style(unit="percentunit", decimals=0, steps=DIVIDEND_STEPS, cell=True)),
            Column("last change", f"{LAST_CHANGE} * 1000 + on(hotkey) group_left(alias) ({LISTED_ALIASES} * 0)",
                   Style(unit="dateTimeFromNow")),
        ],
        width=width, height=height, sort_by=("status", True),
        label_styles={"hotkey": _detail_link("hotkey"), "alias": _detail_link("hotkey")},
    )


def firing_alerts_table(width: int, height: int):
    return table_panel(
        "Firing alerts",
        "Bittensor alerts firing now (Prometheus's ALERTS series): those about the watched validators picked (for a "
        "pending child set: the watched child, else the parent) and those about the exporters, subnets or the chain. "
        "The runbook of each is in alerting/bittensor.rules.yml and in Alertmanager.",
        ["alertname", "hotkey", "netuid", "parent_hotkey", "instance"],
        [Column("severity", ALERTS_BY_SEVERITY, Style(mappings={"3": ("critical", "red"), "2": ("warning", "orange"),
                                                                 "1": ("info", "blue")}, cell=True))],
        width=width, height=height, sort_by=("severity", True),
        renames={"parent_hotkey": "parent"},
        label_styles={"hotkey": _detail_link("hotkey")},
    )


def _losses(value_next: str, value_after: str) -> str:
    """Permit losses of watched pairs, next epoch and after pending sets, valued per subnet."""
    return with_alias(
        f'(label_replace({LOSS_NEXT_EPOCH} * 0 + on(netuid) group_left() {value_next}, "when", "next epoch", "", "")'
        f' or label_replace({LOSS_AFTER_PENDING} * 0 + on(netuid) group_left() {value_after}, '
        '"when", "epoch after next (pending child sets)", "", ""))')


def loss_projections_table(width: int, height: int):
    next_epoch = f"max by (netuid) ({select('bittensor_subnet_next_epoch_block')})"
    after_next = f"max by (netuid) ({select('bittensor_subnet_epoch_after_next_block')})"
    chain_block = f"max({select('bittensor_chain_block')})"
    return table_panel(
        "Permit-loss projections",
        "Watched validators picked that lose their validator permit by the chain's rule at this block: at the next "
        "epoch (stake weights now), or at the epoch after next once the pending child sets due before the next epoch "
        "have applied (parent: whose set is the reason; reason: cuts_it, lifts_contender, ...). The epoch's block and "
        "the time left (12 s a block). The alerts BittensorValidatorPermitProjectedLoss and ...LossAfterPending fire "
        "after 5 minutes of this.",
        ["alias", "hotkey", "netuid", "when", "parent_hotkey", "reason"],
        [
            Column("epoch (block)", _losses(next_epoch, after_next), Style(decimals=0)),
            Column("in", _losses(f"({next_epoch} - on() group_left() {chain_block}) * 12",
                                 f"({after_next} - on() group_left() {chain_block}) * 12"), Style(unit="s")),
        ],
        width=width, height=height, sort_by=("in", False), renames={"parent_hotkey": "parent"},
        label_styles={"hotkey": _detail_link("hotkey", "netuid")},
    )


def last_changes_table(width: int, height: int):
    time = with_alias(watched(f"max by (hotkey, netuid, kind) ({select('bittensor_validator_last_change_timestamp_seconds', PICKED)}) * 1000"))
    block = f"max by (hotkey, netuid, kind) ({select('bittensor_validator_last_change_block', PICKED)})"
    cause = f"max by (hotkey, netuid, kind, cause) ({select('bittensor_validator_last_change_cause_info', PICKED)})"
    return table_panel(
        "Last changes",
        "The last recorded change of each kind to each watched validator picked, newest first, stake moves included "
        "(own stake or stake weight moved more than history.stake_change_ratio): chain time, block and cause, from the "
        "history database (so it survives restarts). `bittensor-validator-exporter history` has the old and new values.",
        ["alias", "hotkey", "netuid", "kind", "cause"],
        [
            Column("time", time, Style(unit="dateTimeAsIso")),
            Column("block", with_alias(watched(f"(({cause} * on(hotkey, netuid, kind) group_left {block}) or on(hotkey, netuid, kind) {block})")),
                   Style(unit="none", decimals=0)),
        ],
        width=width, height=height, sort_by=("time", True),
        label_styles={"hotkey": _detail_link("hotkey", "netuid")},
    )
