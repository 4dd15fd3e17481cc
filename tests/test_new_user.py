"""Start the node and the exporter as a new user would, on a chain state no other test uses."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.harness import names, parse_exposition, series, validator_values
from tests.process_log import LogLines
from tests.oracle import expected
from simnode import SIMNODE_GENESIS_HASH, ChainState
from simnode.scenarios import demo

REPO = Path(__file__).resolve().parent.parent
SEED = 20261122
TAO_WEIGHT = int(0.18 * (2**64 - 1))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, log: LogLines) -> dict:
    """/metrics once the exporter has logged a good refresh. The line is written just before the
    publication swap, so a scrape may still see the one before: then the next refresh's line."""
    for refreshes in (1, 2):
        log.wait_for(lambda lines: sum('"event": "refresh"' in line for line in lines) >= refreshes, timeout=60,
                     what=f"good refresh number {refreshes}")
        with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
            samples = parse_exposition(response.read().decode())
        if series(samples, "bittensor_exporter_up") == 1:
            return samples
    raise AssertionError("the exporter logged two good refreshes but serves none")


@pytest.fixture
def processes(tmp_path):
    started = []

    def start(*args: str, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", *args], cwd=REPO, text=True, **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


def test_metrics_match_the_formulas_for_an_unseen_chain(tmp_path, processes):
    node = processes("simnode", "--port", "0", "--scenario", "demo", "--seed", str(SEED), stdout=subprocess.PIPE)
    endpoint = node.stdout.readline().split()[0]
    assert endpoint.startswith("ws://127.0.0.1:")
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(f"chain:\n  endpoints: [{endpoint}]\n  genesis_hash: '{SIMNODE_GENESIS_HASH}'\nrefresh:\n  interval_seconds: 5\nscope:\n  min_stake_weight: 1000\n"
                      f"history:\n  path: '{tmp_path / 'history.db'}'\n")  # never the checkout's own history.db
    exporter = processes("exporter", "--config.file", str(config), "--web.listen-address", f"127.0.0.1:{port}",
                         "--log.format", "json", stderr=subprocess.PIPE)
    samples = wait_until_up(f"http://127.0.0.1:{port}", LogLines(exporter.stderr))

    world = demo(ChainState(), seed=SEED)  # the same state, rebuilt here as ground truth
    in_scope = set()
    for netuid, hotkeys in world.hotkeys.items():
        for uid, hotkey in enumerate(hotkeys):
            if netuid and world.permits[netuid][uid]:
                want = expected(world, hotkey, netuid, TAO_WEIGHT)
                if want["stake_weight"] >= 1000 * 10**9:
                    in_scope.add((hotkey, str(netuid)))
    exported = {(d["hotkey"], d["netuid"]) for d in names(samples, "bittensor_validator_stake_weight_alpha")}
    assert exported == in_scope and len(in_scope) > 10

    for hotkey, netuid in sorted(in_scope):
        want = expected(world, hotkey, int(netuid), TAO_WEIGHT)
        got = validator_values(samples, hotkey, netuid)
        assert got["own"] == want["own"] / 1e9
        assert got["root"] == want["root"] / 1e9
        assert got["inherited"] == want["inherited"] / 1e9
        assert got["inherited_root"] == want["inherited_root"] / 1e9
        assert got["stake_weight"] == pytest.approx(float(want["stake_weight"]) / 1e9, rel=1e-15)
        assert got["to_children"] == pytest.approx(float(want["to_children"]) / 1e9, rel=1e-15, abs=1e-18)
        assert got["from_parents"] == pytest.approx(float(want["from_parents"]) / 1e9, rel=1e-15, abs=1e-18)
        assert (got["parents"], got["children"]) == (want["parents"], want["children"])
        take = world.takes.get((hotkey, int(netuid)), 0) / 65535
        assert series(samples, "bittensor_validator_childkey_take_ratio", hotkey=hotkey, netuid=netuid) == pytest.approx(take)
