"""Refresh mode ``finalized``: one refresh per new finalized block, against the simulated node.

The test commits blocks and waits for the publications they cause (``wait_published``),
never for a fixed time; a node that cannot say its head costs one ask per poll, no more.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from exporter.app import build_exporter
from exporter.cli import build_parser, resolve_config
from exporter.config import ChainConfig, Config, ScopeConfig
from exporter.config_error import ConfigError
from exporter.config_load import parse_config
from exporter.refresh import Refresher
from simnode import SIMNODE_GENESIS_HASH
from tests.test_refresh import ENDPOINT, FakeRequests
from tests.test_snapshot import chain_read

WAIT = 60  # seconds: only a bound on a wait for an event, reached only when the test fails


@pytest.fixture
def following(tricky_node):
    config = Config(
        chain=ChainConfig(endpoints=(tricky_node.url,), timeout_seconds=10, genesis_hash=SIMNODE_GENESIS_HASH),
        scope=ScopeConfig(min_stake_weight=100),
        listen_address="127.0.0.1:0",
        interval_seconds=3600,  # the fallback never comes due in the test
        refresh_mode="finalized",
        poll_seconds=0.05,
    )
    exporter = build_exporter(config, with_history=False)
    exporter.start()
    yield tricky_node, exporter
    exporter.close()


def test_one_refresh_per_new_finalized_block(following):
    node, exporter = following
    refresher = exporter.refresher
    publication = refresher.wait_published(0, WAIT)
    assert publication.generation == 1 and publication.up
    for _ in range(3):
        number, block_hash = node.state.commit_block()
        publication = refresher.wait_published(publication.generation, WAIT)
        assert publication.up
        assert (publication.data.snapshot.chain.block, publication.data.snapshot.chain.block_hash) == (number, block_hash)
    generation = publication.generation
    node.reset_counters()
    # No new block: the node is asked for its head, and nothing is refreshed.
    asked = threading.Event()
    while not asked.wait(0.05):
        if node.requests["chain_getFinalizedHead"] >= 3:
            asked.set()
    assert refresher.current().generation == generation
    assert set(node.requests) == {"chain_getFinalizedHead"}, "only the head is asked while it does not move"


def test_blocks_finalized_together_are_one_refresh(following):
    node, exporter = following
    first = publication = exporter.refresher.wait_published(0, WAIT)
    number, _ = node.state.advance(4)
    while publication.data.snapshot.chain.block < number:
        publication = exporter.refresher.wait_published(publication.generation, WAIT)
    assert publication.data.snapshot.chain.block == number
    assert publication.generation - first.generation <= 2, "one refresh (two if an ask fell between the commits)"


def test_stopping_while_following_is_prompt(following):
    _, exporter = following
    exporter.refresher.wait_published(0, WAIT)
    started = time.monotonic()
    exporter.close()
    assert time.monotonic() - started < 3


class SilentHead:
    """A chain whose reads work and whose finalized head cannot be read."""

    def __init__(self):
        self.asks = 0
        self.reads = 0

    def read(self, scope, timeout, events=None):
        self.reads += 1
        return chain_read(), ()

    def finalized_head(self, timeout):
        self.asks += 1
        raise ConnectionError("no answer")


def test_a_node_that_cannot_say_its_head_costs_one_ask_per_poll():
    chain = SilentHead()
    config = Config(scope=ScopeConfig(min_stake_weight=100), interval_seconds=3600, refresh_mode="finalized", poll_seconds=0.05)
    refresher = Refresher(config, chain, FakeRequests(), (ENDPOINT,))
    refresher.start()
    try:
        refresher.wait_published(0, WAIT)
        started = time.monotonic()
        done = threading.Event()
        while not done.wait(0.05):
            if chain.asks >= 10:
                done.set()
        elapsed = time.monotonic() - started
    finally:
        refresher.stop(5)
    assert chain.reads == 1, "no refresh without a new head (until the interval)"
    assert chain.asks <= elapsed / 0.05 + 3, "one ask per poll, never a busy loop"


def test_the_mode_and_poll_are_validated_and_the_flag_overrides_the_file(tmp_path):
    config = parse_config({"refresh": {"mode": "finalized", "poll_seconds": 1}})
    assert (config.refresh_mode, config.poll_seconds) == ("finalized", 1)
    assert parse_config(None).refresh_mode == "interval"
    with pytest.raises(ConfigError) as error:
        parse_config({"refresh": {"mode": "blocks", "poll_seconds": 0}})
    assert "refresh.mode: must be one of interval, finalized" in str(error.value)
    assert "refresh.poll_seconds: must be between" in str(error.value)
    path = tmp_path / "config.yaml"
    path.write_text("refresh:\n  mode: interval\n")
    args = build_parser().parse_args(["--config.file", str(path), "--refresh.mode", "finalized"])
    assert resolve_config(args).refresh_mode == "finalized"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--refresh.mode", "sometimes"])


def test_interval_mode_never_asks_for_the_head():
    chain = SilentHead()
    refresher = Refresher(replace(Config(scope=ScopeConfig(min_stake_weight=100)), interval_seconds=3600),
                          chain, FakeRequests(), (ENDPOINT,))
    refresher.start()
    try:
        refresher.wait_published(0, WAIT)
    finally:
        refresher.stop(5)
    assert chain.asks == 0
