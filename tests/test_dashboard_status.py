"""My validators' "am I OK" queries, as shipped in dashboards/my-validators.json, evaluated by the
real promtool on hand-made series of an HA pair (every exporter series twice, instances a and b).

Hotkeys and the status each must get (the worst that applies):
  OK       permit far above StakeThreshold, last change two hours ago,
           weights set a block ago                                         -> 0 OK
  CHANGED  the same, a change ten minutes ago                              -> 1 changed recently
  RISK     permit holder at 1,020 alpha, within 5 % of StakeThreshold 1,000 -> 2 at risk
  CUT      a pending child set of P cuts it (and an alert about it fires)   -> 2 at risk
  LOST     the next epoch takes its permit (projected_permit 0)             -> 2 at risk
  ALERT    a warning alert about it fires                                   -> 2 at risk
  NOTFOUND watched, not on the chain                                        -> 2 at risk
  STALEW   weights set 8 blocks ago, the activity cutoff 12 (past half)     -> 2 at risk
  LAGGING  exporter b, 10 blocks behind the chain, saw its weights set 10 blocks before
           its block; exporter a, 2 before: blocks since are per exporter, the
           freshest wins (not b's old LastUpdate against a's block: 20)     -> 0 OK
  NOPERMIT weights 100 blocks old, no permit (earns no dividends anyway)    -> 0 OK
  PASTCUT  weights set 20 blocks ago, past the cutoff                      -> 3 inactive
  INACTIVE weights fresh, but the chain marked it inactive                 -> 3 inactive
  GONE     its series left the exporters half an hour ago                   -> 4 stale data
  OTHER    not watched, cut by a pending set too: never listed, never counted
With the exporters' newest refresh 20 minutes old, every watched hotkey is stale data.
"""

from __future__ import annotations

import subprocess

import yaml

from tests.dashboard_queries import load_dashboards, panels, substitute
from tests.external_tools import require_tool

EVAL_MINUTES = 60
NOW = EVAL_MINUTES * 60  # time() at the evaluation
WATCHED = ["OK", "CHANGED", "RISK", "CUT", "LOST", "ALERT", "NOTFOUND", "STALEW", "LAGGING", "NOPERMIT", "PASTCUT",
           "INACTIVE", "GONE"]
EXPECTED_STATUS = {"OK": 0, "CHANGED": 1, "RISK": 2, "CUT": 2, "LOST": 2, "ALERT": 2, "NOTFOUND": 2, "STALEW": 2,
                   "LAGGING": 0, "NOPERMIT": 0, "PASTCUT": 3, "INACTIVE": 3, "GONE": 4}
BLOCK = 5000
CUTOFF = 12
# LastUpdate each exporter serves: {hotkey: (exporter a's, exporter b's)}; b is at BLOCK - 10.
LAST_WEIGHTS = {"OK": (4999, 4989), "STALEW": (4992, 4982), "LAGGING": (4998, 4980), "NOPERMIT": (4900, 4890),
                "PASTCUT": (4980, 4970), "INACTIVE": (4999, 4989)}
BLOCKS_SINCE = {"OK": 1, "STALEW": 8, "LAGGING": 2, "PASTCUT": 20, "INACTIVE": 1}  # permit holders only
PICKS = {"instance": "(a|b)", "hotkey": ".*"}  # both exporters, "All" watched hotkeys


def _exporter_series(last_success: int, instance: str) -> dict[str, str]:
    """{series: promtool values} as exporter ``instance`` serves them, without the instance label."""
    constant = f"x{EVAL_MINUTES}"
    behind = 0 if instance == "a" else 10
    series = {
        'bittensor_subnet_activity_cutoff_blocks{netuid="1"}': f"{CUTOFF}{constant}",
        'bittensor_validator_inactive{hotkey="INACTIVE",netuid="1"}': f"1{constant}",
        'bittensor_validator_trust_ratio{hotkey="OK",netuid="1"}': f"0.9{constant}",
        'bittensor_validator_trust_ratio{hotkey="NOPERMIT",netuid="1"}': f"0.1{constant}",
        'bittensor_validator_dividends_ratio{hotkey="OK",netuid="1"}': f"0.1{constant}",
        'bittensor_validator_stake_share_ratio{hotkey="OK",netuid="1"}': f"0.2{constant}",
        'bittensor_validator_dividends_ratio{hotkey="RISK",netuid="1"}': f"0{constant}",
        'bittensor_validator_stake_share_ratio{hotkey="RISK",netuid="1"}': f"0{constant}",
        'bittensor_subnet_max_validators{netuid="1"}': f"64{constant}",
        'bittensor_subnet_validator_permits{netuid="1"}': f"10{constant}",
        "bittensor_chain_stake_threshold_alpha": f"1000{constant}",
        "bittensor_chain_block": f"{BLOCK - behind}{constant}",
        "bittensor_exporter_last_refresh_success_timestamp_seconds": f"{last_success}{constant}",
        'bittensor_validator_info{hotkey="OTHER",alias="",coldkey="c",watched="false"}': f"1{constant}",
        'bittensor_childkey_pending_proportion_change_ratio{parent_hotkey="P",child_hotkey="CUT",netuid="1"}': f"-0.1{constant}",
        'bittensor_childkey_pending_proportion_change_ratio{parent_hotkey="P",child_hotkey="OTHER",netuid="1"}': f"-0.2{constant}",
        'bittensor_validator_projected_permit{hotkey="LOST",netuid="1"}': f"0{constant}",
        'bittensor_validator_last_change_timestamp_seconds{hotkey="OK",netuid="1",kind="own_stake_moved"}': f"{NOW - 7200}{constant}",
        'bittensor_validator_last_change_timestamp_seconds{hotkey="CHANGED",netuid="1",kind="own_stake_moved"}': f"{NOW - 600}{constant}",
    }
    for hotkey in WATCHED:
        values = f"1x{EVAL_MINUTES // 2}" if hotkey == "GONE" else f"1{constant}"
        series[f'bittensor_watched_hotkey_found{{hotkey="{hotkey}",alias="{hotkey.lower()}"}}'] = (
            f"0{constant}" if hotkey == "NOTFOUND" else values)
        if hotkey == "NOTFOUND":
            continue
        series[f'bittensor_validator_info{{hotkey="{hotkey}",alias="{hotkey.lower()}",coldkey="c",watched="true"}}'] = values
        weight = 1020 if hotkey == "RISK" else 5000
        series[f'bittensor_validator_stake_weight_alpha{{hotkey="{hotkey}",netuid="1"}}'] = (
            f"{weight}x{EVAL_MINUTES // 2}" if hotkey == "GONE" else f"{weight}{constant}")
        series[f'bittensor_validator_permit{{hotkey="{hotkey}",netuid="1",uid="1"}}'] = (
            f"0{constant}" if hotkey == "NOPERMIT" else values)
        if hotkey in LAST_WEIGHTS:
            block = LAST_WEIGHTS[hotkey][0 if instance == "a" else 1]
            series[f'bittensor_validator_last_weights_block{{hotkey="{hotkey}",netuid="1",mechanism="0"}}'] = f"{block}{constant}"
    return series


def _alerts() -> dict[str, str]:
    """ALERTS as the rules write them: per-validator alerts without instance, exporter alerts with it."""
    firing = f"1x{EVAL_MINUTES}"
    return {
        'ALERTS{alertname="BittensorChildkeyTakeUnexpected",alertstate="firing",severity="warning",hotkey="ALERT",netuid="1"}': firing,
        'ALERTS{alertname="BittensorPendingChildSetCutsValidator",alertstate="firing",severity="warning",parent_hotkey="P",child_hotkey="CUT",netuid="1"}': firing,
        'ALERTS{alertname="BittensorPendingChildSetCutsValidator",alertstate="firing",severity="warning",parent_hotkey="P",child_hotkey="OTHER",netuid="1"}': firing,
        'ALERTS{alertname="BittensorValidatorPermitProjectedGain",alertstate="firing",severity="info",hotkey="OK",netuid="1"}': firing,
        'ALERTS{alertname="BittensorExporterRefreshFailing",alertstate="firing",severity="warning",instance="a"}': firing,
        'ALERTS{alertname="Watchdog",alertstate="firing",severity="none"}': firing,
    }


def _input_series(last_success: int) -> list[dict]:
    pair = []
    for instance in ("a", "b"):
        for name, values in _exporter_series(last_success, instance).items():
            labels = f'instance="{instance}"'
            series = name.replace("}", f",{labels}}}") if "{" in name else f"{name}{{{labels}}}"
            pair.append({"series": series, "values": values})
    return pair + [{"series": name, "values": values} for name, values in _alerts().items()]


def _expr(title: str, ref_id: str = "A") -> str:
    panel = next(p for p in panels(load_dashboards()["my-validators.json"]) if p["title"] == title)
    return substitute(next(t["expr"] for t in panel["targets"] if t["refId"] == ref_id), PICKS)


def _column(title: str, header: str) -> str:
    """The query of table ``title``'s column ``header``."""
    panel = next(p for p in panels(load_dashboards()["my-validators.json"]) if p["title"] == title)
    names = next(t for t in panel["transformations"] if t["id"] == "organize")["options"]["renameByName"]
    ref_id = next(name for name, shown in names.items() if shown == header).removeprefix("Value #")
    return _expr(title, ref_id)


def _labels(labels: dict) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _case(last_success: int, tests: list[tuple[str, list[tuple[dict, float]]]]) -> dict:
    return {
        "interval": "1m",
        "input_series": _input_series(last_success),
        "promql_expr_test": [
            {"expr": expr, "eval_time": f"{EVAL_MINUTES}m",
             "exp_samples": [{"labels": _labels(labels), "value": value} for labels, value in samples]}
            for expr, samples in tests
        ],
    }


def test_status_alerts_and_counts_as_promtool_evaluates_them(tmp_path):
    promtool = require_tool("promtool")
    status = _expr("Status")  # column "status": one row per watched hotkey, with its alias
    fresh = _case(NOW - 10, [
        (status, [({"hotkey": h, "alias": h.lower()}, level) for h, level in EXPECTED_STATUS.items()]),
        # one cut of a watched child picked; OTHER's cut is the network's, not mine
        (_expr("Pending warnings"), [({}, 1)]),
        (_expr("At risk or stale"), [({}, 9)]),
        # Is it working and earning: over the subnets where it holds a permit, by hotkey
        (_column("Status", "blocks since weights"), [({"hotkey": h, "alias": h.lower()}, n) for h, n in BLOCKS_SINCE.items()]),
        (_column("Status", "of cutoff"), [({"hotkey": h, "alias": h.lower()}, n / CUTOFF) for h, n in BLOCKS_SINCE.items()]),
        (_column("Status", "inactive"), [({"hotkey": h, "alias": h.lower()}, int(h in ("PASTCUT", "INACTIVE")))
                                         for h in WATCHED]),
        (_column("Status", "vtrust (lowest)"), [({"hotkey": "OK", "alias": "ok"}, 0.9)]),
        # RISK's stake share is 0: no ratio
        (_column("Status", "dividends / stake share (lowest)"), [({"hotkey": "OK", "alias": "ok"}, 0.5)]),
        (_expr("Permit losses projected"), [({}, 1)]),
        # warnings about CUT, ALERT and exporter a; not OTHER's, not the info, not the Watchdog
        (_expr("Alerts firing"), [({}, 3)]),
        (_expr("Data age"), [({}, 10)]),
    ])
    # The table: each alert shown once (two exporters), by the validator it is about, valued by severity.
    fresh["promql_expr_test"].append({"expr": _expr("Firing alerts"), "eval_time": f"{EVAL_MINUTES}m", "exp_samples": [
        {"labels": _labels({"alertname": "BittensorChildkeyTakeUnexpected", "severity": "warning", "hotkey": "ALERT", "netuid": "1"}), "value": 2},
        {"labels": _labels({"alertname": "BittensorPendingChildSetCutsValidator", "severity": "warning", "hotkey": "CUT",
                            "parent_hotkey": "P", "child_hotkey": "CUT", "netuid": "1"}), "value": 2},
        {"labels": _labels({"alertname": "BittensorValidatorPermitProjectedGain", "severity": "info", "hotkey": "OK", "netuid": "1"}), "value": 1},
        {"labels": _labels({"alertname": "BittensorExporterRefreshFailing", "severity": "warning", "instance": "a"}), "value": 2},
    ]})
    stale = _case(NOW - 1200, [(status, [({"hotkey": h, "alias": h.lower()}, 4) for h in WATCHED])])
    tests = tmp_path / "status.test.yml"
    tests.write_text(yaml.safe_dump({"rule_files": [], "evaluation_interval": "1m", "tests": [fresh, stale]}, width=1000))
    result = subprocess.run([promtool, "test", "rules", str(tests)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr

