"""The README's first screen, run as written: `make demo` serves the demo's validators, and the
history command it gives lists the changes the demo chain makes."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from tests.harness import parse_exposition
from tests.process_log import LogLines

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


def test_the_readmes_demo_commands_run_as_written(tmp_path):
    (demo,) = re.findall(r"```sh\n(.*?)```", first_screen(), re.DOTALL)
    (history,) = re.findall(r"`(make history CONFIG=config\.demo\.yaml)`", first_screen())
    port = free_port()
    # Beside whatever else runs here: free ports, and the demo's changes every 2 s instead of every minute.
    env = {**os.environ, "DEMO_NODE_PORT": str(free_port()), "DEMO_CHANGE_EVERY": "2",
           "DEMO_FLAGS": f"--web.listen-address 127.0.0.1:{port} --interval 2s --log.format json"}
    started = datetime.now(timezone.utc).replace(microsecond=0)
    proc = subprocess.Popen(demo.strip(), shell=True, cwd=REPO, env=env, text=True, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log = LogLines(proc.stdout)
    try:
        # A refresh is logged just before it is published: after the second line the first is served.
        log.wait_for(lambda lines: sum('"event": "refresh"' in line for line in lines) >= 2, timeout=90,
                     what="two refreshes")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            samples = parse_exposition(response.read().decode())
        info = [dict(labels) for (name, labels) in samples if name == "bittensor_validator_info"]
        assert {"hotkey": DEMO_VALIDATOR, "alias": "demo-validator", "watched": "true"} in [
            {k: i[k] for k in ("hotkey", "alias", "watched")} for i in info]
        assert any(name == "bittensor_validator_stake_weight_alpha" for name, _ in samples)

        def refreshed_after_a_change(lines: list[str]) -> bool:
            changed = [i for i, line in enumerate(lines) if line.startswith("change 0:")]
            return bool(changed) and sum('"event": "refresh"' in line for line in lines[changed[0]:]) >= 2
        log.wait_for(refreshed_after_a_change, timeout=60, what="refresh after the demo's first change")

        listed = subprocess.run(history, shell=True, cwd=REPO, capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        events = [line for line in listed.stdout.splitlines() if re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d #", line)]
        recent = [e for e in events
                  if datetime.strptime(e[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc) >= started]
        assert any("take_changed" in e and DEMO_VALIDATOR in e and "cause=ChildKeyTakeSet" in e and " %" in e
                   for e in recent), listed.stdout
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # make, its shell, the node and the exporter: the group started here
        proc.wait(timeout=30)
        log.close()
