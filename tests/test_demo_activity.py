"""The demo shows a validator going stale and its alerts firing: the real exporter reads the demo
chain as it moves (a change a minute, as ``make demo`` does), and what it served, minute by
minute, goes through the repository's alert rules in promtool."""

from __future__ import annotations

import subprocess

import yaml

from exporter.config import ScopeConfig
from simnode import SimNode
from simnode.demo import STALE_NETUID, change_chain, demo_chain, demo_scope, stale_hotkey
from tests.harness import series
from tests.test_alerting import RULES, tool

FAMILIES = ("bittensor_chain_block", "bittensor_validator_last_weights_block", "bittensor_subnet_activity_cutoff_blocks",
            "bittensor_validator_inactive", "bittensor_validator_permit", "bittensor_validator_info")
MINUTES = 17


def test_the_demos_stale_validator_goes_stale_and_its_alerts_fire(tmp_path, exporter_factory):
    promtool = tool("promtool")
    state = demo_chain()
    scope: ScopeConfig = demo_scope()
    stale = stale_hotkey()
    minutes = []
    with SimNode(state) as node:
        exporter = exporter_factory(node, scope=scope)
        for step in range(MINUTES):
            change_chain(state, step)
            assert exporter.refresh()
            minutes.append({key: value for key, value in exporter.scrape().items() if key[0] in FAMILIES})
    last = minutes[-1]
    block = series(last, "bittensor_chain_block")
    stale_last = series(last, "bittensor_validator_last_weights_block", hotkey=stale, netuid=STALE_NETUID, mechanism=0)
    permitted = {(dict(labels)["hotkey"], dict(labels)["netuid"]) for (name, labels), v in last.items()
                 if name == "bittensor_validator_permit" and v == 1}
    fresh = [v for (name, labels), v in last.items() if name == "bittensor_validator_last_weights_block"
             and (dict(labels)["hotkey"], dict(labels)["netuid"]) in permitted - {(stale, str(STALE_NETUID))}]
    assert block - stale_last > series(last, "bittensor_subnet_activity_cutoff_blocks", netuid=STALE_NETUID)
    assert fresh and all(v == block for v in fresh), "every other permit holder set weights in the last block"

    # The rules' timing, from what the exporter served: past half the cutoff from minute `half`
    # (the warning waits 5 minutes), past it from minute `past` (the critical alert waits 2).
    cutoff = series(last, "bittensor_subnet_activity_cutoff_blocks", netuid=STALE_NETUID)
    ages = [series(m, "bittensor_chain_block")
            - series(m, "bittensor_validator_last_weights_block", hotkey=stale, netuid=STALE_NETUID, mechanism=0) for m in minutes]
    half = next(i for i, age in enumerate(ages) if age > cutoff / 2)
    past = next(i for i, age in enumerate(ages) if age > cutoff)
    assert half + 5 < past < MINUTES - 3, "the demo shows the warning, then the critical alert"
    warning, critical = _alert("BittensorValidatorWeightsStale", stale), _alert("BittensorValidatorInactive", stale)
    checks = [
        (warning, half + 4, []), (warning, half + 5, [_firing("BittensorValidatorWeightsStale", "warning", stale)]),
        (critical, past + 1, []), (critical, past + 2, [_firing("BittensorValidatorInactive", "critical", stale)]),
        (critical, MINUTES - 1, [_firing("BittensorValidatorInactive", "critical", stale)]),
        # nobody else: every other validator set weights all along
        ('count by (hotkey) (ALERTS{alertname=~"BittensorValidatorWeightsStale|BittensorValidatorInactive"})', MINUTES - 1,
         [{"labels": f'{{hotkey="{stale}"}}', "value": 1}]),
    ]
    case = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": _input_series(minutes),
            "promql_expr_test": [{"expr": expr, "eval_time": f"{minute}m", "exp_samples": samples} for expr, minute, samples in checks],
        }],
    }
    path = tmp_path / "demo.test.yml"
    path.write_text(yaml.safe_dump(case))
    result = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def _alert(name: str, hotkey: str) -> str:
    return f'ALERTS{{alertname="{name}",alertstate="firing",hotkey="{hotkey}"}}'


def _firing(name: str, severity: str, hotkey: str) -> dict:
    labels = (f'ALERTS{{alertname="{name}",alertstate="firing",severity="{severity}",job="demo",'
              f'hotkey="{hotkey}",alias="demo-parent",netuid="{STALE_NETUID}"}}')  # the demo's alias for it
    return {"labels": labels, "value": 1}


def _input_series(minutes: list[dict]) -> list[dict]:
    """Each series the exporter served, a sample a minute (``_`` where it served none)."""
    keys = sorted({key for minute in minutes for key in minute}, key=lambda k: (k[0], sorted(k[1])))
    out = []
    for name, labels in keys:
        text = ",".join(f'{k}="{v}"' for k, v in sorted({**dict(labels), "job": "demo", "instance": "demo"}.items()))
        values = " ".join(repr(float(m[(name, labels)])) if (name, labels) in m else "_" for m in minutes)
        out.append({"series": f"{name}{{{text}}}", "values": values})
    return out
