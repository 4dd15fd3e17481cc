"""The demo chain of the compose stack: the simulated node's "demo" scenario, kept moving.

``python -m simnode.demo`` serves it like ``python -m simnode
--scenario demo``, and every ``--change-every`` seconds changes the watched demo
validator (stake, take, pending child set) so the dashboards' rates and change
panels have something to show. The stack test applies the same changes.

Changes are the chain's own actions (``simnode.actions``): each writes storage and
deposits its event (``StakeAdded``/``StakeRemoved``, ``ChildKeyTakeSet``,
``SetChildrenScheduled``) in the block, and blocks are committed with the block step
(``simnode.epoch.advance_to``: epochs, and due child sets applied with ``SetChildren``),
so the exporter's history records each change with its cause, as on the live chain.

Every permit holder sets weights at every change (``WeightsSet``), but one: the demo's
parent stops on subnet 2, whose activity cutoff is a few blocks, so its weights-stale
alert fires a few minutes into the demo and the critical one a few minutes later.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from pathlib import Path

import yaml

from exporter.config import ScopeConfig
from exporter.config_load import parse_config
from simnode import ChainState, SimNode
from simnode.actions import add_stake, remove_stake, schedule_children, set_childkey_take
from simnode.activity import set_activity_cutoff, set_weights_of
from simnode.epoch import advance_to, epoch_permits
from simnode.scenarios import demo

REPO = Path(__file__).resolve().parent.parent
DEMO_CONFIG = REPO / "docker" / "demo-config.yaml"
# The validator detail dashboard is checked on the demo config's first watched
# hotkey, on the subnet where it has a parent, children and a pending child set.
DETAIL_NETUID = 2
# The demo's parent stops setting weights on this subnet, whose activity cutoff is this many
# blocks (mainnet's default is 5,000): a block a minute, it is past half of it from the 6th change
# (the warning, which waits 5 minutes, fires at the 11th) and past it from the 12th (the critical
# alert at the 14th). tests/test_demo_activity.py runs the rules over what the exporter serves.
STALE_NETUID = DETAIL_NETUID
STALE_CUTOFF = 12


def demo_config_document() -> dict:
    return yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))


def demo_scope() -> ScopeConfig:
    return parse_config(demo_config_document()).scope


def detail_hotkey() -> str:
    return demo_scope().watch[0].hotkey


def stale_hotkey() -> str:
    """The watched validator that stops setting weights (the demo's parent)."""
    return demo_scope().watch[1].hotkey


def demo_chain(*, wall_clock: bool = False) -> ChainState:
    """The demo scenario, plus a pending child set of the demo's parent that halves the
    demo validator's proportion, so every panel and the early-warning alerts have
    something to show. ``wall_clock``: blocks stamped with the time they are made."""
    state = ChainState(wall_clock=wall_clock)
    demo(state)  # commits a block
    validator, parent = (key.hotkey for key in demo_scope().watch[:2])
    children = state.get("ChildKeys", [parent, DETAIL_NETUID])
    assert any(child == validator for _, child in children), "the demo's parent no longer has the demo validator as child"
    pending = [(p // 2 if child == validator else p, child) for p, child in children]
    block = state.head.number + 1
    # Due 1,000 blocks after the demo starts (applied at the first epoch after that, with SetChildren).
    schedule_children(state, parent, DETAIL_NETUID, pending, cooldown=999)
    # The scenario ranks permits by own stake; hand them out as an epoch would, so the
    # exporter's projection of the next epoch shows only what the demo's changes do.
    for netuid in sorted(n for n in demo_netuids(state) if n):
        state.set("ValidatorPermit", [netuid], epoch_permits(state, netuid))
    set_activity_cutoff(state, STALE_NETUID, STALE_CUTOFF)
    advance_to(state, block)
    return state


def demo_netuids(state: ChainState) -> list[int]:
    return [n for n in range(64) if state.get("NetworksAdded", [n])]


def change_chain(state: ChainState, step: int) -> int:
    """Apply change number ``step`` to the detail validator and commit a block; return its number.

    Every step moves own stake by 20-25 % (its owner stakes a quarter more on even
    steps and unstakes a fifth on odd ones, so a long demo stays near the scenario's
    numbers), sets another take and reschedules the pending child set: each is a
    change the history records, with the event that caused it. The block is
    committed with its block step (an epoch due at it runs).
    """
    hotkey, netuid = detail_hotkey(), DETAIL_NETUID
    block = state.head.number + 1
    stake = state.get("TotalHotkeyAlpha", [hotkey, netuid]) or 0
    coldkey = state.get("Owner", [hotkey])
    if step % 2 == 0:
        add_stake(state, coldkey, hotkey, netuid, stake // 4)
    else:
        remove_stake(state, coldkey, hotkey, netuid, stake // 5)
    set_childkey_take(state, hotkey, netuid, 1000 * (step % 3 + 1))
    pending = state.get("PendingChildKeys", [netuid, hotkey])
    if pending is not None:
        children, cooldown = pending
        due = cooldown + (10 if step % 2 == 0 else -10)
        schedule_children(state, hotkey, netuid, children, cooldown=max(1, due - block))
    holders_set_weights(state)
    advance_to(state, block)
    return block


def holders_set_weights(state: ChainState) -> None:
    """Every permit holder sets weights on each subnet, but the stale validator on its subnet."""
    stale = stale_hotkey()
    for netuid in sorted(n for n in demo_netuids(state) if n):
        permits = state.get("ValidatorPermit", [netuid]) or []
        uids = [uid for uid, held in enumerate(permits)
                if held and not (netuid == STALE_NETUID and state.get("Keys", [netuid, uid]) == stale)]
        set_weights_of(state, netuid, uids)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simnode.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9944)
    parser.add_argument("--change-every", type=float, default=60.0, metavar="SECONDS", help="0: never change")
    args = parser.parse_args(argv)

    # Stamped with the wall clock: alerts on how recent a change is fire as on the live chain.
    state = demo_chain(wall_clock=True)
    stop = threading.Event()
    # Both signals just wake the main thread, which then shuts the node down.
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with SimNode(state, args.host, args.port) as node:
        print(f"{node.url} scenario=demo head=#{state.head.number} change_every={args.change_every:g}s", flush=True)
        step, next_change = 0, time.monotonic() + args.change_every
        # Short waits keep the loop responsive to signals.
        while not stop.wait(0.5):
            if args.change_every and time.monotonic() >= next_change:
                block = change_chain(state, step)
                print(f"change {step}: block #{block}", flush=True)
                step, next_change = step + 1, next_change + args.change_every
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
