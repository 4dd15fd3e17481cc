"""``python -m bench.notifications``: Discord messages for three watched hotkeys at mainnet scale.

Issue 23's scenario on the simulated mainnet-scale chain (``simnode.scenarios.mainnet_scale``,
network mode, history on): three watched hotkeys, the first given a uid on every subnet and an
``expected_take`` that its on-chain take differs from everywhere. The exporter, a real
Prometheus with the repository's rules, and two real Alertmanagers that both receive every
alert: the repository's config (group by alert name and hotkey) and the same config grouping
by subnet too, as it did before. Both post to a fake Discord webhook on loopback
(``tests.test_notifications``), with a group_wait of 1 s and a group_interval of 2 s. After
``--minutes`` (the take alert holds 5 minutes) it prints how many messages each sent, by
alert, and the longest message.
"""

from __future__ import annotations

import argparse
import collections
import os
import tempfile
import time
from pathlib import Path

from exporter.config import ScopeConfig, WatchedHotkey
from exporter.logs import configure_logging
from simnode import ChainState, SimNode
from simnode.scenarios import mainnet_scale
from tests.harness import ExporterUnderTest
from tests.prometheus_server import PrometheusServer, derive_config
from tests.test_new_user import free_port
from tests.test_notifications import AlertmanagerServer, FakeDiscord, alertmanager_config, give_uid_everywhere

from bench.run import CACHE_ENV


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.notifications", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=7.0, help="how long alerts may fire (default 7)")
    parser.add_argument("--interval", type=int, default=15, help="scrape, evaluation and refresh interval, seconds")
    args = parser.parse_args(argv)
    configure_logging("warning", "console")
    import shutil

    prometheus_binary, alertmanager_binary = shutil.which("prometheus"), shutil.which("prometheus-alertmanager")
    state = ChainState(wall_clock=True)
    world = mainnet_scale(state, edges=7000)
    seen = collections.Counter(h for n, hotkeys in world.hotkeys.items() if n for h in hotkeys)
    keys = dict(zip(("alpha", "bravo", "charlie"), (h for h, _ in seen.most_common(3))))
    subnets = give_uid_everywhere(state, world, keys["alpha"], set(keys.values()))
    # alpha's take is 0 everywhere; its operator expects 9 %
    watch = tuple(WatchedHotkey(h, alias, 0.09 if alias == "alpha" else None) for alias, h in keys.items())
    with tempfile.TemporaryDirectory(prefix="bench-notifications-") as tmp, SimNode(state) as node, FakeDiscord() as discord:
        os.environ.setdefault(CACHE_ENV, tmp)
        work = Path(tmp)
        exporter = ExporterUnderTest(node.url, scope=ScopeConfig(watch=watch), history_path=str(work / "history.db"))
        try:
            assert exporter.refresh()
            ports = {"now": free_port(), "before": free_port()}
            config = derive_config(exporter.url.removeprefix("http://"), interval=f"{args.interval}s")
            config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{p}" for p in ports.values()]}]}]}
            shipped = alertmanager_config(discord.url, discord.url)
            before = alertmanager_config(discord.url + "/before", discord.url + "/before")
            before["route"]["group_by"] = ["alertname", "hotkey", "netuid"]
            (work / "prometheus").mkdir()
            with AlertmanagerServer(alertmanager_binary, work / "am-now", shipped, ports["now"]) as now, \
                    AlertmanagerServer(alertmanager_binary, work / "am-before", before, ports["before"]) as old, \
                    PrometheusServer(prometheus_binary, work / "prometheus", config, free_port()) as prometheus:
                deadline = time.monotonic() + 120
                now.wait_ready(deadline), old.wait_ready(deadline), prometheus.wait_ready(deadline)
                end = time.monotonic() + args.minutes * 60
                while time.monotonic() < end:
                    started = time.monotonic()
                    exporter.refresh()
                    time.sleep(max(0.0, args.interval - (time.monotonic() - started)))
                firing = collections.Counter(
                    (a["labels"]["alertname"], a["labels"].get("alias") or a["labels"].get("hotkey", ""))
                    for a in prometheus.alerts() if a["state"] == "firing")
        finally:
            exporter.close()
        print(f"{len(subnets)} subnets; alerts firing by (alert, validator): {dict(firing)}")
        for name, path in (("grouped by alert and hotkey (shipped)", "/discord"), ("grouped by subnet too (before)", "/before/discord")):
            messages = discord.to(path)
            titles = collections.Counter(m["embeds"][0]["title"].split(" · ")[0] for m in messages)
            longest = max((len(m["embeds"][0]["description"]) for m in messages), default=0)
            print(f"{name}: {len(messages)} Discord messages, longest {longest} characters; {dict(titles)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
