"""The demo the compose stack runs (simulated node, scenario "demo", docker/demo-config.yaml), for tests."""

from __future__ import annotations

from pathlib import Path

import yaml

from exporter.config import ScopeConfig, parse_config
from tests.simnode import ChainState
from tests.simnode.scenarios import demo

REPO = Path(__file__).resolve().parent.parent
DEMO_CONFIG = REPO / "docker" / "demo-config.yaml"
# The validator detail dashboard is checked on the demo config's first watched
# hotkey, on the subnet where it has a parent, children and a pending child set.
DETAIL_NETUID = 2


def demo_config_document() -> dict:
    return yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))


def demo_scope() -> ScopeConfig:
    return parse_config(demo_config_document()).scope


def detail_hotkey() -> str:
    return demo_scope().watch[0].hotkey


def demo_chain() -> ChainState:
    """A fresh chain holding the demo scenario, as `python -m tests.simnode --scenario demo` serves it."""
    state = ChainState()
    demo(state)
    return state


def change_chain(state: ChainState, step: int) -> int:
    """Move the detail validator's stake, take and pending child set; return the new block.

    Each step changes something the history records (stake moves beyond 5 %,
    a take, a rescheduled child set), so rates, deltas and change counters have data.
    """
    hotkey, netuid = detail_hotkey(), DETAIL_NETUID
    stake = state.get("TotalHotkeyAlpha", [hotkey, netuid]) or 0
    state.set("TotalHotkeyAlpha", [hotkey, netuid], stake * (5 + step) // 4)
    state.set("ChildkeyTake", [hotkey, netuid], 1000 * (step + 1))
    pending = state.get("PendingChildKeys", [netuid, hotkey])
    if pending is not None:
        children, cooldown = pending
        state.set("PendingChildKeys", [netuid, hotkey], (children, cooldown + 10))
    number, _ = state.commit_block()
    return number
