"""Every metric family the exporter serves: name, type, labels, help text and collector, in one table.

The renderers (``exposition``, ``change_counters``, ``status``) take a family's type and help
text from here by name, so the exposition and the generated reference (``docs/metrics.md``,
written by ``make docs``) cannot disagree. A new family is a row here first; rendering a name
that is not here fails. ``tests/test_metric_defs.py`` checks the labels each family is rendered
with against the row.
"""

from __future__ import annotations

from dataclasses import dataclass

# Appended to the help text of the families drawn from the snapshot.
CACHED = " Cached: refreshed on the exporter's interval from one finalized block."


@dataclass(frozen=True)
class MetricDef:
    name: str  # as exposed; a counter's name ends in _total
    type: str  # gauge, counter or histogram
    labels: tuple[str, ...]
    help: str  # as served in # HELP (without CACHED: see ``cached``)
    collector: str  # a key of config.COLLECTORS, or "exporter" (always on)
    cached: bool = True  # drawn from the snapshot: CACHED is appended to the help

    @property
    def help_text(self) -> str:
        """The # HELP line's text."""
        return self.help + CACHED if self.cached else self.help


_VH = ("hotkey", "netuid")
_EDGE = ("parent_hotkey", "child_hotkey", "netuid")
_PENDING = ("parent_hotkey", "netuid")
_N = ("netuid",)
_CHANGE = ("hotkey", "netuid", "kind")

ESTIMATE = (" An estimate: the chain's split (coinbase/run_coinbase.rs get_parent_child_dividends_distribution) "
            "applied to the child's Emission of the last epoch at this block's stakes, links, takes and coldkeys.")

METRICS: tuple[MetricDef, ...] = (
    # -- collector "validator": a series per validator in scope ----------------------------
    MetricDef("bittensor_validator_own_stake_alpha", "gauge", _VH,
              "Own stake A on the subnet (TotalHotkeyAlpha), in alpha.", "validator"),
    MetricDef("bittensor_validator_inherited_stake_alpha", "gauge", _VH,
              "Inherited (effective) alpha stake A - given + received, as the chain computes it.", "validator"),
    MetricDef("bittensor_validator_stake_weight_alpha", "gauge", _VH,
              "Stake weight: inherited alpha + TaoWeight * inherited root stake, in alpha units.", "validator"),
    MetricDef("bittensor_validator_childkey_take_ratio", "gauge", _VH,
              "Effective childkey take (0-1), what payouts use: max(ChildkeyTake, MinChildkeyTake, "
              "MinChildkeyTakePerSubnet), never capped at MaxChildkeyTake.", "validator"),
    MetricDef("bittensor_validator_stored_childkey_take_ratio", "gauge", _VH,
              "Childkey take (0-1) as stored in ChildkeyTake (0 if never set), before the chain's minimums; it can lie "
              "above MaxChildkeyTake after the bound was lowered.", "validator"),
    MetricDef("bittensor_validator_permit", "gauge", (*_VH, "uid"),
              "1 if the uid holds a validator permit from the subnet's last epoch, else 0; label uid: the hotkey's uid "
              "on the subnet (empty if it has none).", "validator"),
    MetricDef("bittensor_validator_childkey_suspended", "gauge", _VH,
              "1 if the runtime suspended the hotkey's childkeys (ChildkeyThresholdSuspended).", "validator"),
    MetricDef("bittensor_validator_projected_permit", "gauge", _VH,
              "Only where the next epoch would change the permit, by the chain's rule at this block's stake weights: "
              "1 gains one, 0 loses it.", "validator"),
    MetricDef("bittensor_validator_projected_permit_after_pending", "gauge", (*_VH, "parent_hotkey", "reason"),
              "Only where pending child sets change it: the permit the epoch after next "
              "(bittensor_subnet_epoch_after_next_block) would give once the pending sets due before the next epoch "
              "have applied, at this block's stakes, where that differs from bittensor_validator_projected_permit's "
              "next epoch: 1 gains one, 0 loses it. parent_hotkey: whose pending set is the reason; reason: cuts_it, "
              "raises_it (its stake weight), lifts_contender, cuts_holder (another uid's).", "validator"),
    MetricDef("bittensor_validator_expected_childkey_take_ratio", "gauge", _VH,
              "Expected childkey take (0-1) configured for a watched hotkey.", "validator"),
    MetricDef("bittensor_validator_info", "gauge", ("hotkey", "coldkey", "alias", "watched"),
              "Validator metadata (value 1): coldkey owning the hotkey, the configured alias, and whether it is on "
              "the watch list.", "validator"),
    # -- collector "stake_detail": a series only where the relationship exists -------------
    MetricDef("bittensor_validator_stake_to_children_alpha", "gauge", _VH,
              "Alpha stake given to childkeys on the subnet, A * sum of child proportions; only validators with "
              "children.", "stake_detail"),
    MetricDef("bittensor_validator_stake_from_parents_alpha", "gauge", _VH,
              "Alpha stake received from parent hotkeys' own stake on the subnet; only validators with parents.",
              "stake_detail"),
    MetricDef("bittensor_validator_inherited_root_stake_tao", "gauge", _VH,
              "Inherited root stake T - given + received through this subnet's childkeys, in TAO; only validators "
              "with parents or children (otherwise it is the root stake).", "stake_detail"),
    MetricDef("bittensor_hotkey_root_stake_tao", "gauge", ("hotkey",),
              "Own root stake T of the hotkey (TotalHotkeyAlpha on netuid 0), in TAO; only hotkeys in scope that "
              "have some.", "stake_detail"),
    # -- collector "relationships" ---------------------------------------------------------
    MetricDef("bittensor_childkey_proportion_ratio", "gauge", _EDGE,
              "Share (0-1) of the parent's stake delegated to the child on the subnet, as the parent's ChildKeys lists it "
              "(what the parent gives).", "relationships"),
    MetricDef("bittensor_childkey_inherited_alpha", "gauge", _EDGE,
              "Alpha the child receives from this parent on the subnet: the parent's own alpha times the proportion of "
              "each of the child's ParentKeys entries naming it, in the chain's fixed point (0 where ParentKeys does not "
              "list the parent; see bittensor_chain_anomalous_entries).", "relationships"),
    MetricDef("bittensor_childkey_pending_children", "gauge", _PENDING,
              "Children in a scheduled (pending) child set as the chain will apply it (the parent itself dropped, a child "
              "listed twice counted once); 0 schedules a revocation of all children.",
              "relationships"),
    MetricDef("bittensor_childkey_pending_cooldown_block", "gauge", _PENDING,
              "Block after which the pending child set is applied (at the next epoch).", "relationships"),
    MetricDef("bittensor_childkey_pending_proportion_ratio", "gauge", _EDGE,
              "Share (0-1) of the parent's stake the pending child set would delegate to the child.", "relationships"),
    MetricDef("bittensor_childkey_pending_proportion_change_ratio", "gauge", _EDGE,
              "What the pending child set will do to the child when it applies: pending minus current proportion "
              "(negative: cut; minus the current proportion: dropped; 0: unchanged; positive: raised or added).",
              "relationships"),
    # -- collector "subnet" ----------------------------------------------------------------
    MetricDef("bittensor_subnet_max_validators", "gauge", _N,
              "MaxAllowedValidators: k in the subnet's top-k validator permit rule.", "subnet"),
    MetricDef("bittensor_subnet_validator_permits", "gauge", _N,
              "Uids holding a validator permit from the subnet's last epoch.", "subnet"),
    MetricDef("bittensor_subnet_permit_cutoff_stake_weight_alpha", "gauge", _N,
              "Stake weight of the k-th strongest uid passing StakeThreshold now (absent while fewer than k pass, or "
              "while the chain skips the subnet's epochs): "
              "the weakest the next epoch would give a permit by rank.", "subnet"),
    MetricDef("bittensor_subnet_top_contender_stake_weight_alpha", "gauge", _N,
              "Stake weight of the (k+1)-th strongest uid passing StakeThreshold now (absent when none is left out, or "
              "while the chain skips the subnet's epochs): "
              "the strongest the next epoch would leave without a permit; a holder below it loses its permit if "
              "nothing else changes.", "subnet"),
    MetricDef("bittensor_subnet_dissolving", "gauge", _N,
              "1 while the subnet is being dissolved: out of NetworksAdded, its storage not yet all deleted (queued in "
              "DissolveCleanupQueue, or entries left in the maps read); absent otherwise. It is no subnet any more: "
              "none of its values is exported or counted.", "subnet"),
    MetricDef("bittensor_subnet_metagraph_difference_rao", "gauge", _N,
              "Largest difference, in rao, between the chain's own inherited alpha, inherited root and stake weight "
              "of any uid (SubnetInfoRuntimeApi.get_selective_metagraph) and the exporter's; a few subnets of "
              "watched hotkeys are checked each refresh, in turn. Anything but 0 means a formula differs from the "
              "connected runtime's.", "subnet"),
    MetricDef("bittensor_subnet_next_epoch_block", "gauge", _N,
              "Block of the subnet's next epoch, which decides validator permits (classic schedule; absent for "
              "tempo 0: no epoch will run).", "subnet"),
    MetricDef("bittensor_subnet_epoch_after_next_block", "gauge", _N,
              "Block of the epoch after next, the first that counts the pending child sets due before the next "
              "epoch (applied right after it); only subnets where those sets change a permit.", "subnet"),
    # -- collector "watched" ---------------------------------------------------------------
    MetricDef("bittensor_watched_hotkey_found", "gauge", ("hotkey", "alias"),
              "1 if the watched hotkey holds a uid on at least one subnet (root included) or has childkey "
              "relationships, else 0: per-validator alerts for a key that is not found are inert.", "watched"),
    # -- collector "chain": one series each ------------------------------------------------
    MetricDef("bittensor_chain_block", "gauge", (), "Finalized block the snapshot was read at.", "chain"),
    MetricDef("bittensor_chain_block_timestamp_seconds", "gauge", (), "Unix time of that block (Timestamp.Now).", "chain"),
    MetricDef("bittensor_chain_runtime_spec_version", "gauge", (),
              "spec_version of the runtime that governs that block.", "chain"),
    MetricDef("bittensor_chain_tao_weight_ratio", "gauge", (),
              "TaoWeight (0-1): weight of root TAO in stake weight.", "chain"),
    MetricDef("bittensor_chain_stake_threshold_alpha", "gauge", (),
              "StakeThreshold: minimum stake weight for a validator permit, in alpha units.", "chain"),
    MetricDef("bittensor_chain_min_childkey_take_ratio", "gauge", (), "MinChildkeyTake (0-1).", "chain"),
    MetricDef("bittensor_chain_max_childkey_take_ratio", "gauge", (), "MaxChildkeyTake (0-1).", "chain"),
    MetricDef("bittensor_chain_pending_childkey_cooldown_blocks", "gauge", (),
              "PendingChildKeyCooldown: blocks before a scheduled child set can apply.", "chain"),
    MetricDef("bittensor_chain_anomalous_entries", "gauge", ("rule", "netuid"),
              "Entries of a state the chain's storage holds but its write paths would not make, by rule and subnet "
              "(netuid empty: chain-wide), present while the state lasts; the numbers are published as the chain "
              "computes them from it. Rules: take_above_max, min_take_above_max, parents_do_not_mirror_children, "
              "duplicate_parent, pending_self_or_duplicate, permit_without_hotkey, duplicate_hotkey "
              "(docs/chain-states.md).", "chain"),
    # -- collector "changes": from the history database ------------------------------------
    MetricDef("bittensor_childkey_changes_total", "counter", _CHANGE,
              "Changes recorded in the history database since the exporter started, for a watched validator "
              "(for an edge: the child; for a pending set: the parent), by kind. Cached: updated on the exporter's "
              "interval.", "changes", cached=False),
    MetricDef("bittensor_subnet_changes_total", "counter", ("netuid", "kind"),
              "Changes recorded in the history database since the exporter started, on the subnet, by kind "
              "(every validator the history follows). Cached: updated on the exporter's interval.", "changes",
              cached=False),
    MetricDef("bittensor_validator_last_change_timestamp_seconds", "gauge", _CHANGE,
              "Chain time (block timestamp) of the last recorded change of this kind to a watched validator (for an "
              "edge: the child; for a pending set: the parent), from the history database.", "changes", cached=False),
    MetricDef("bittensor_validator_last_change_recorded_timestamp_seconds", "gauge", _CHANGE,
              "Chain time (block timestamp) of the refresh that recorded the last change of this kind to a watched "
              "validator: its own time, or later when a catch-up after an outage found it; from the history database.",
              "changes", cached=False),
    MetricDef("bittensor_validator_last_change_block", "gauge", _CHANGE,
              "Block of the last recorded change of this kind to a watched validator (the block of the chain event "
              "that caused it; for a change known only as a net change, the last block it may lie in), from the "
              "history database.", "changes", cached=False),
    MetricDef("bittensor_validator_last_change_cause_info", "gauge", (*_CHANGE, "cause"),
              "The cause of the last recorded change of this kind to a watched validator: the chain event "
              "(SetChildren, ChildKeyTakeSet, HotkeySwapped, ...) or a silent cause (epoch, dropped_at_apply, "
              "suspension, gap, no_event); always 1.", "changes", cached=False),
    # -- the exporter's own health: always on ----------------------------------------------
    MetricDef("bittensor_exporter_up", "gauge", (),
              "1 if the last refresh read the chain successfully, else 0 (the last good snapshot is still served).",
              "exporter", cached=False),
    MetricDef("bittensor_exporter_refresh_duration_seconds", "histogram", (),
              "Wall time of one refresh: chain read, snapshot and rendering.", "exporter", cached=False),
    MetricDef("bittensor_exporter_refresh_stage_duration_seconds", "histogram", ("stage",),
              "Wall time of each stage of a refresh (read, snapshot, changes, history, render).", "exporter",
              cached=False),
    MetricDef("bittensor_exporter_last_refresh_success_timestamp_seconds", "gauge", (),
              "Unix time of the last successful refresh.", "exporter", cached=False),
    MetricDef("bittensor_exporter_refresh_errors_total", "counter", ("reason",),
              "Failed refreshes, by reason: timeout, connection, rpc_error, decode, invalid (a read no honest node "
              "serves, docs/endpoint-trust.md), internal, wrong_chain (an endpoint of another chain), endpoints_disagree "
              "(chain.cross_check).", "exporter", cached=False),
    MetricDef("bittensor_exporter_refresh_rpc_requests", "gauge", (),
              "JSON-RPC requests the last refresh sent.", "exporter", cached=False),
    MetricDef("bittensor_exporter_validators", "gauge", (),
              "Validator (hotkey, netuid) pairs in scope in the served snapshot.", "exporter", cached=False),
    MetricDef("bittensor_exporter_child_edges", "gauge", (),
              "Parent/child edges exported in the served snapshot.", "exporter", cached=False),
    MetricDef("bittensor_exporter_snapshot_bytes", "gauge", ("encoding",),
              "Size of the rendered snapshot exposition, by encoding.", "exporter", cached=False),
    MetricDef("bittensor_exporter_history_writes_total", "counter", ("result",),
              "Refreshes written to the history database, by result (ok, error).", "exporter", cached=False),
    MetricDef("bittensor_exporter_history_last_write_success_timestamp_seconds", "gauge", (),
              "Unix time of the last successful history write.", "exporter", cached=False),
    MetricDef("bittensor_exporter_history_database_bytes", "gauge", (),
              "Size of the history database file and its write-ahead log.", "exporter", cached=False),
    MetricDef("bittensor_exporter_endpoint_up", "gauge", ("endpoint",),
              "1 if the last chain read through this endpoint succeeded, else 0 (endpoint label: scheme://host:port).",
              "exporter", cached=False),
    MetricDef("bittensor_exporter_endpoint_errors_total", "counter", ("endpoint", "reason"),
              "Failed chain reads through this endpoint, by reason.", "exporter", cached=False),
    MetricDef("bittensor_exporter_endpoint_read_duration_seconds", "histogram", ("endpoint",),
              "Wall time of one refresh's chain read through this endpoint, failed or not.", "exporter", cached=False),
    MetricDef("bittensor_exporter_build_info", "gauge", ("version", "revision", "python_version"),
              "Exporter version, git revision and Python version (value 1).", "exporter", cached=False),
    MetricDef("bittensor_exporter_rpc_requests_total", "counter", ("method",),
              "JSON-RPC requests sent to the chain endpoint, by method.", "exporter", cached=False),
    # -- collectors "activity" and "earnings" (activity_exposition.py) ----------------------
    MetricDef("bittensor_validator_last_weights_block", "gauge", (*_VH, "mechanism"),
              "LastUpdate: block of the uid's last weight set on the subnet, per mechanism (mechanism m of a subnet "
              "is the chain's row netuid + m x 4096); bittensor_chain_block minus it is the blocks since. For watched "
              "hotkeys, and every validator past half its subnet's activity cutoff or marked inactive (every validator "
              "with collector activity_all).", "activity"),
    MetricDef("bittensor_validator_inactive", "gauge", _VH,
              "1 where the chain marked the uid inactive at the subnet's last epoch (Active false: its last weight set "
              "was more than the activity cutoff before the epoch); absent where it is active.", "activity"),
    MetricDef("bittensor_subnet_activity_cutoff_blocks", "gauge", ("netuid",),
              "Blocks without a weight set after which the subnet's epoch marks a validator inactive (ActivityCutoff, or "
              "max(1, ActivityCutoffFactorMilli x tempo / 1000) on runtimes with dynamic tempo).", "activity"),
    MetricDef("bittensor_validator_trust_ratio", "gauge", _VH,
              "ValidatorTrust (0-1) of the uid at the subnet's last epoch: how far its weights agree with consensus.", "earnings"),
    MetricDef("bittensor_validator_dividends_ratio", "gauge", _VH,
              "Dividends (0-1): the uid's share of the subnet's validator dividends at the last epoch.", "earnings"),
    MetricDef("bittensor_validator_stake_share_ratio", "gauge", _VH,
              "The uid's share (0-1) of the permit holders' stake weight at the last epoch (StakeWeight): what its dividend "
              "share is set against.", "earnings"),
    MetricDef("bittensor_validator_emission_alpha", "gauge", _VH,
              "Emission of the uid at the subnet's last epoch (incentive and dividends before the parent/child split), in alpha.",
              "earnings"),
    MetricDef("bittensor_validator_alpha_dividends_alpha", "gauge", _VH,
              "AlphaDividendsPerSubnet: the hotkey's alpha dividends at the subnet's last epoch after its delegate take (its "
              "nominators' part), in alpha.", "earnings"),
    MetricDef("bittensor_validator_root_dividends_alpha", "gauge", _VH,
              "RootAlphaDividendsPerSubnet: the root-stake part of the hotkey's dividends at the subnet's last epoch, after "
              "its delegate take, in alpha.", "earnings"),
    MetricDef("bittensor_validator_root_dividends_tao", "gauge", _VH,
              "TaoDividendsPerSubnet (runtimes before RootAlphaDividendsPerSubnet): the root dividends paid to the hotkey on "
              "the subnet at the last epoch, in TAO.", "earnings"),
    MetricDef("bittensor_hotkey_delegate_take_ratio", "gauge", ("hotkey",),
              "Delegate take (0-1) of the hotkey (Delegates): its cut of its nominators' dividends on every subnet.", "earnings"),
    MetricDef("bittensor_childkey_dividends_estimated_alpha", "gauge", _EDGE,
              "Of the child's dividends at the subnet's last epoch, the alpha the chain routes to this parent for the stake "
              "it gives, before the child's take and the burn." + ESTIMATE, "earnings"),
    MetricDef("bittensor_childkey_take_estimated_alpha", "gauge", _EDGE,
              "Of that, the alpha the child keeps as its childkey take (0 when parent and child share a coldkey)." + ESTIMATE,
              "earnings"),
)

BY_NAME: dict[str, MetricDef] = {m.name: m for m in METRICS}
assert len(BY_NAME) == len(METRICS), "a metric name is listed twice"


def metric(name: str) -> MetricDef:
    """The row of ``name``; a KeyError names a family rendered without one."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"{name} has no row in exporter/serving/metric_defs.py METRICS") from None


def exposed_names() -> frozenset[str]:
    """Every sample name a scrape can carry: the families, and a histogram's _bucket, _sum and _count."""
    names = set(BY_NAME)
    for m in METRICS:
        if m.type == "histogram":
            names.update(m.name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return frozenset(names)
