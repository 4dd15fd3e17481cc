"""What an operator receives: the exporter -> real Prometheus with the repository's rules -> real
Alertmanager with the repository's config and templates -> a fake Discord webhook on loopback.

The chain: three watched hotkeys, one ("alpha") registered on every one of 40 subnets. In one
block alpha's childkey take changes on all 40, bravo's on one, and charlie schedules a child
set. Hand-counted, that is three notifications (Alertmanager groups by alert name and
hotkey): alpha's take change listing its 40 subnets, bravo's, and charlie's pending set;
the Watchdog goes to the heartbeat route, not to Discord. With the old grouping (by subnet too) it
was 42. Every message is within Discord's limits, names the validator by its alias, and is
not cut short. Then Prometheus restarts: the alerts fire again at its first evaluation, with
the same labels, so Alertmanager sends nothing more (no "resolved", no second message).

Alertmanager's timers are shortened by a test-only copy of the config (group_wait 1 s,
group_interval 1 s); everything else is the shipped file.
"""

from __future__ import annotations

import collections
import json
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from exporter.config import ScopeConfig, WatchedHotkey
from simnode import ChainState, SimNode
from simnode.actions import schedule_children, set_childkey_take
from simnode.epoch import U64_MAX
from simnode.scenarios import mainnet_scale
from tests.external_tools import require_tool
from tests.harness import ExporterUnderTest
from tests.prometheus_server import REPO, PrometheusServer, derive_config, wait_ready
from tests.test_new_user import free_port

SUBNETS = 40
BUDGET_SECONDS = 90
GROUP_INTERVAL_SECONDS = 1
ALERTMANAGER = REPO / "alertmanager" / "alertmanager.yml"
TEMPLATES = REPO / "alertmanager" / "templates"
# Discord's limits (embed: title 256, description 4096, all embeds 6000 characters; content
# 2000) and ours: a message is short enough to read on a phone and never cut by Alertmanager.
DISCORD_TITLE, DISCORD_DESCRIPTION, DISCORD_EMBEDS, DISCORD_CONTENT = 256, 4096, 6000, 2000
OUR_MESSAGE = 2000


class FakeDiscord:
    """An HTTP server on loopback that records every POST (path, JSON body) and answers 204."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict]] = []
        self._changed = threading.Condition()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = min(int(self.headers.get("Content-Length", 0)), 1 << 20)
                body = json.loads(self.rfile.read(length) or b"{}")
                with owner._changed:
                    owner.posts.append((self.path, body))
                    owner._changed.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeDiscord":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def to(self, path: str) -> list[dict]:
        with self._changed:
            return [body for p, body in self.posts if p == path]

    def wait_for(self, path: str, count: int, deadline: float) -> list[dict]:
        with self._changed:
            while len([p for p, _ in self.posts if p == path]) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
        return self.to(path)


def alertmanager_config(discord: str, heartbeat: str) -> dict:
    """The shipped alertmanager.yml with the webhooks on loopback, the templates from the
    repository and group timers in seconds (the test's only changes)."""
    config = yaml.safe_load(ALERTMANAGER.read_text(encoding="utf-8"))
    config["templates"] = [str(TEMPLATES / Path(pattern).name) for pattern in config["templates"]]
    for route in [config["route"], *config["route"].get("routes", [])]:
        if "group_wait" in route or route is config["route"]:
            route["group_wait"] = "1s"
        route["group_interval"] = f"{GROUP_INTERVAL_SECONDS}s"
    for receiver in config["receivers"]:
        for discord_config in receiver.get("discord_configs", []):
            assert discord_config.pop("webhook_url_file")
            discord_config["webhook_url"] = discord + "/discord"
        for webhook in receiver.get("webhook_configs", []):
            assert webhook.pop("url_file")
            webhook["url"] = heartbeat + "/heartbeat"
    return config


class AlertmanagerServer:
    """Debian's prometheus-alertmanager on loopback, clustering off, its data under ``workdir``."""

    def __init__(self, binary: str, workdir: Path, config: dict, port: int):
        workdir.mkdir(parents=True, exist_ok=True)
        self.url = f"http://127.0.0.1:{port}"
        config_path = workdir / "alertmanager.yml"
        config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.log_path = workdir / "alertmanager.log"
        self._args = [binary, f"--config.file={config_path}", f"--storage.path={workdir / 'data'}",
                      f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=warn"]
        self._process = None

    def __enter__(self) -> "AlertmanagerServer":
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(self._args, stdout=log, stderr=subprocess.STDOUT)
        return self

    def __exit__(self, *exc) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def wait_ready(self, deadline: float) -> None:
        wait_ready("alertmanager", self.url, self._process, lambda: self.log_path.read_text(errors="replace"), deadline)


def notification_chain() -> tuple[ChainState, dict[str, str], list[int], str]:
    """A small network (40 subnets of 16 uids) stamped with the wall clock, so the change alerts'
    window (an hour after a change is recorded) is now. Three watched hotkeys, the first given a uid
    on every subnet (the last uid without a permit of each). Returns the state, alias -> hotkey,
    the subnets, and an unwatched hotkey of the first subnet."""
    state = ChainState(wall_clock=True)
    world = mainnet_scale(state, netuids=SUBNETS + 1, uids=16, permits=8, edges=0, pending=0, takes=0, pool=30)
    seen = collections.Counter(h for n, hotkeys in world.hotkeys.items() if n for h in hotkeys)
    alpha, bravo, charlie = (h for h, _ in seen.most_common(3))
    subnets = give_uid_everywhere(state, world, alpha, {alpha, bravo, charlie})
    unwatched = next(h for h in world.hotkeys[subnets[0]] if h not in (alpha, bravo, charlie))
    return state, {"alpha": alpha, "bravo": bravo, "charlie": charlie}, subnets, unwatched


def give_uid_everywhere(state: ChainState, world, hotkey: str, keep: set[str]) -> list[int]:
    """Register ``hotkey`` on every subnet where it has no uid, in the last uid without a permit
    that is not one of ``keep``; commit a block. Returns the subnets (root aside)."""
    subnets = sorted(n for n in world.hotkeys if n)
    for netuid in subnets:
        registered = world.hotkeys[netuid]
        if hotkey in registered:
            continue
        uid = next(u for u in reversed(range(len(registered)))
                   if not world.permits[netuid][u] and registered[u] not in keep)
        state.delete("Uids", [netuid, registered[uid]])
        state.set("Keys", [netuid, uid], hotkey)
        state.set("Uids", [netuid, hotkey], uid)
        registered[uid] = hotkey
    state.commit_block()
    return subnets


def change(state: ChainState, keys: dict[str, str], subnets: list[int], unwatched: str) -> None:
    """In one block: alpha's take on every subnet, bravo's on one, and a child set of charlie
    (its child unwatched: that is no alert)."""
    for netuid in subnets:
        set_childkey_take(state, keys["alpha"], netuid, 3000)
    set_childkey_take(state, keys["bravo"], subnets[0], 3000)
    schedule_children(state, keys["charlie"], subnets[0], [(U64_MAX // 2, unwatched)])
    state.commit_block()


def firing(prometheus: PrometheusServer) -> list[dict]:
    return [a["labels"] for a in prometheus.alerts() if a["state"] == "firing"]


def test_three_watched_hotkeys_give_three_short_notifications_with_aliases(tmp_path):
    prometheus_binary = require_tool("prometheus")
    alertmanager_binary = require_tool("prometheus-alertmanager", "alertmanager")
    deadline = time.monotonic() + BUDGET_SECONDS
    state, keys, subnets, unwatched = notification_chain()
    alias_of = {hotkey: alias for alias, hotkey in keys.items()}
    scope = ScopeConfig(watch=tuple(WatchedHotkey(hotkey, alias) for alias, hotkey in keys.items()))
    with SimNode(state) as node, FakeDiscord() as discord:
        exporter = ExporterUnderTest(node.url, scope=scope, history_path=str(tmp_path / "history.db"))
        try:
            assert exporter.refresh(), "first refresh (the history's baseline)"
            am_port, prometheus_port = free_port(), free_port()
            config = derive_config(exporter.url.removeprefix("http://"))
            config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]}
            am_config = alertmanager_config(discord.url, discord.url)
            with AlertmanagerServer(alertmanager_binary, tmp_path / "alertmanager", am_config, am_port) as am:
                am.wait_ready(deadline)
                (tmp_path / "prometheus").mkdir()
                with PrometheusServer(prometheus_binary, tmp_path / "prometheus", config, prometheus_port) as prometheus:
                    prometheus.wait_ready(deadline)
                    change(state, keys, subnets, unwatched)
                    assert exporter.refresh(), "the refresh that records the changes"
                    expected = {("BittensorChildkeyTakeChanged", "alpha"): SUBNETS,
                                ("BittensorChildkeyTakeChanged", "bravo"): 1,
                                ("BittensorPendingChildSetScheduled", "charlie"): 1}
                    alerts = _wait(lambda: _by_cause(firing(prometheus)) == expected and firing(prometheus), deadline,
                                   lambda: f"firing: {_by_cause(firing(prometheus))}")
                    messages = discord.wait_for("/discord", len(expected), deadline)
                    # Two group intervals more: nothing else comes.
                    time.sleep(2 * GROUP_INTERVAL_SECONDS + 1)
                    messages = discord.to("/discord")
                    assert len(messages) == 3, [m["embeds"][0]["title"] for m in messages]
                    # (the Watchdog, routed to the heartbeat, is not among them; Prometheus sends its first
                    # firing before it has found Alertmanager, and again only after resend_delay, 1 minute)
                    _check_messages(messages, alias_of, keys, subnets)
                    before_restart = {frozenset(a.items()) for a in alerts}

                # Prometheus restarts on its data: the change alerts hold no state in memory.
                with PrometheusServer(prometheus_binary, tmp_path / "prometheus", config, prometheus_port) as prometheus:
                    prometheus.wait_ready(deadline)
                    after = _wait(lambda: {frozenset(a.items()) for a in firing(prometheus)} >= before_restart,
                                  deadline, lambda: f"after the restart: {_by_cause(firing(prometheus))}")
                    assert after
                    time.sleep(2 * GROUP_INTERVAL_SECONDS + 1)
                    again = discord.to("/discord")
                    assert len(again) == 3, [m["embeds"][0]["title"] for m in again[3:]]
        finally:
            exporter.close()
    assert time.monotonic() < deadline, "the notification test ran over its time budget"


def _wait(check, deadline: float, describe):
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out: {describe()}")


def _by_cause(alerts: list[dict]) -> dict[tuple[str, str], int]:
    """(alert name, alias) -> alerts firing, for the alerts that go to Discord."""
    counts: dict[tuple[str, str], int] = collections.Counter(
        (a["alertname"], a.get("alias", a.get("hotkey", ""))) for a in alerts if a["alertname"] != "Watchdog")
    return dict(counts)


def _check_messages(messages: list[dict], alias_of: dict[str, str], keys: dict[str, str], subnets: list[int]) -> None:
    by_title = {}
    for message in messages:
        assert len(message.get("content") or "") <= DISCORD_CONTENT
        embeds = message["embeds"]
        assert len(embeds) == 1
        embed = embeds[0]
        title, description = embed["title"], embed["description"]
        assert len(title) <= DISCORD_TITLE and len(description) <= DISCORD_DESCRIPTION
        assert len(title) + len(description) <= DISCORD_EMBEDS
        assert len(description) <= OUR_MESSAGE, f"{title}: {len(description)} characters"
        assert not description.endswith("…") and not title.endswith("…"), f"cut short: {title}"
        assert "<no value>" not in description + title
        by_title[title] = description
    alpha = by_title["[WARNING] ChildkeyTakeChanged · alpha · 40 subnets"]
    listed = alpha.split("Firing on 40: subnet ", 1)[1].split("\n", 1)[0]
    assert sorted(int(n) for n in listed.split(", ")) == subnets
    assert "Childkey take of alpha on subnet" in alpha and f"Hotkey: {keys['alpha']}" in alpha
    bravo = by_title["[WARNING] ChildkeyTakeChanged · bravo"]
    assert f"Childkey take of bravo on subnet {subnets[0]} changed" in bravo and "Firing on" not in bravo
    charlie = by_title["[INFO] PendingChildSetScheduled · charlie"]
    assert f"charlie has a pending child set on subnet {subnets[0]}" in charlie
