"""The demo configurations watch hotkeys that exist on the demo chain, so a newcomer's
`make demo` shows watched validators (and no 'watched hotkey not found' warning)."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.config_load import load_config
from simnode import ChainState
from simnode.scenarios import demo

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("path", ["config.demo.yaml", "docker/demo-config.yaml"])
def test_every_watched_hotkey_of_the_demo_is_on_the_demo_chain(path):
    """Registered, or (the demo's child) in a childkey relationship: what bittensor_watched_hotkey_found counts."""
    config = load_config(str(REPO / path), environ={})
    world = demo(ChainState())
    found = {hotkey for hotkeys in world.hotkeys.values() for hotkey in hotkeys}
    found |= {hotkey for hotkey, _ in (*world.child_keys, *world.parent_keys)}
    watched = [w.hotkey for w in config.scope.watch]
    assert watched and set(watched) <= found


def test_make_demo_uses_the_demo_configuration():
    makefile = (REPO / "Makefile").read_text()
    demo_recipe = makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert "--config.file config.demo.yaml" in demo_recipe
