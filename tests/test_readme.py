"""The README's first screen, run as written: `make demo` serves the demo's validators, and the
history command it gives lists the changes the demo chain makes."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Optional

from tests.harness import parse_exposition
from tests.external_tools import require_tool
from tests.process_log import LogLines
from tests.prometheus_server import PrometheusServer, derive_config

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
DEMO_VALIDATOR = "5FeCZE1NBqdJX4VxVZwgJLdz2DmEicJpPzbQuNgBR5bQc1xa"  # config.demo.yaml's demo-validator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_screen() -> str:
    return README[: README.index("\n## Run it against finney")]


def test_the_first_screen_is_short_and_starts_with_the_demo():
    lines = first_screen().splitlines()
    assert len(lines) <= 40
    (block,) = re.findall(r"```sh\n(.*?)```", first_screen(), re.DOTALL)
    assert block.strip() == "make demo"
    assert "make history CONFIG=config.demo.yaml" in first_screen()
    assert "docker compose --profile demo up --build" in first_screen()


@contextlib.contextmanager
def demo_running(history: Optional[Path] = None) -> Iterator[tuple[int, LogLines]]:
    """The README's demo command, run as written (beside whatever else runs here: on free ports,
    and with the demo's changes every 2 s instead of every minute); its port and its output.
    ``history``: where its history goes instead of the checkout's demo-history.db, so two demos
    running at once never write one file."""
    (demo,) = re.findall(r"```sh\n(.*?)```", first_screen(), re.DOTALL)
    port = free_port()
    env = {**os.environ, "DEMO_NODE_PORT": str(free_port()), "DEMO_CHANGE_EVERY": "2",
           "DEMO_FLAGS": f"--web.listen-address 127.0.0.1:{port} --interval 2s --log.format json",
           **({"DEMO_HISTORY": str(history)} if history is not None else {})}
    proc = subprocess.Popen(demo.strip(), shell=True, cwd=REPO, env=env, text=True, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log = LogLines(proc.stdout)
    try:
        # A refresh is logged just before it is published: after the second line the first is served.
        log.wait_for(lambda lines: refreshes(lines) >= 2, timeout=90, what="two refreshes")
        yield port, log
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # make, its shell, the node and the exporter: the group started here
        proc.wait(timeout=30)
        log.close()


def refreshes(lines: list[str]) -> int:
    return sum('"event": "refresh"' in line for line in lines)


def test_the_readmes_demo_commands_run_as_written():
    (history,) = re.findall(r"`(make history CONFIG=config\.demo\.yaml)`", first_screen())
    started = datetime.now(timezone.utc).replace(microsecond=0)
    with demo_running() as (port, log):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            samples = parse_exposition(response.read().decode())
        info = [dict(labels) for (name, labels) in samples if name == "bittensor_validator_info"]
        assert {"hotkey": DEMO_VALIDATOR, "alias": "demo-validator", "watched": "true"} in [
            {k: i[k] for k in ("hotkey", "alias", "watched")} for i in info]
        assert any(name == "bittensor_validator_stake_weight_alpha" for name, _ in samples)

        def refreshed_after_a_change(lines: list[str]) -> bool:
            changed = [i for i, line in enumerate(lines) if line.startswith("change 0:")]
            return bool(changed) and refreshes(lines[changed[0]:]) >= 2
        log.wait_for(refreshed_after_a_change, timeout=60, what="refresh after the demo's first change")

        listed = subprocess.run(history, shell=True, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    events = [line for line in listed.stdout.splitlines() if re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d #", line)]
    recent = [e for e in events if datetime.strptime(e[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc) >= started]
    assert any("take_changed" in e and DEMO_VALIDATOR in e and "cause=ChildKeyTakeSet" in e and " %" in e
               for e in recent), listed.stdout


def test_the_demo_alerts_the_readme_promises_fire(tmp_path):
    """The alerts the first screen says the compose demo fires, with this repository's prometheus.yml
    and rules (scraping every second) against `make demo`."""
    promised = set(re.findall(r"\*\*(Bittensor\w+)\*\*", first_screen()))
    assert promised == {"BittensorPendingChildSetCutsValidator", "BittensorChildkeyTakeChanged"}
    binary = require_tool("prometheus")
    with demo_running(tmp_path / "demo-history.db") as (port, log), \
            PrometheusServer(binary, tmp_path, derive_config(f"127.0.0.1:{port}"), free_port()) as prometheus:
        prometheus.wait_ready(time.monotonic() + 60)
        firing: set = set()

        def all_fire(lines: list[str]) -> bool:
            # Looked at again at every refresh the exporter logs: new data, new evaluations.
            firing.update(a["labels"]["alertname"] for a in prometheus.alerts()
                          if a["state"] == "firing" and a["labels"].get("hotkey", a["labels"].get("child_hotkey"))
                          == DEMO_VALIDATOR)
            return promised <= firing
        log.wait_for(all_fire, timeout=90, what=f"{sorted(promised)} firing")
