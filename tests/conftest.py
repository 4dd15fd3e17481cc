"""Shared fixtures: an isolated SDK metadata cache and a simulated node with the tricky chain."""

from __future__ import annotations

import pytest

from tests import tricky_chain
from tests.harness import ExporterUnderTest
from simnode import ChainState, SimNode


@pytest.fixture(autouse=True)
def isolated_runtime_cache(tmp_path_factory, monkeypatch):
    # The SDK caches downloaded metadata under the home directory by default.
    monkeypatch.setenv("BITTENSOR_RUNTIME_CACHE_DIR", str(tmp_path_factory.mktemp("runtime-cache")))


def write_tricky_chain(state: ChainState) -> None:
    for pallet, item, params, value in tricky_chain.storage_writes():
        state.set(item, params, value, pallet=pallet)
    state.commit_block()


@pytest.fixture
def tricky_node():
    state = ChainState()
    write_tricky_chain(state)
    with SimNode(state) as node:
        yield node


@pytest.fixture
def exporter_factory():
    made = []

    def make(node, **kwargs) -> ExporterUnderTest:
        """``node``: a SimNode, or a list of endpoint URLs (tried in order)."""
        exporter = ExporterUnderTest(node.url if hasattr(node, "url") else node, **kwargs)
        made.append(exporter)
        return exporter

    yield make
    for exporter in made:
        exporter.close()
