"""Shared fixtures: an isolated SDK metadata cache and a simulated node with the tricky chain."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import tricky_chain
from tests.harness import ExporterUnderTest
from simnode import ChainState, SimNode


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto`: one worker more than the CPUs this process may use. Many of the slow tests wait
    on other processes (Prometheus, Alertmanager, promtool, the exporter started as an operator
    would) more than they compute; a third worker on two CPUs took the suite from ~115 s to ~90 s
    with every timing-sensitive test still passing (a fourth made those fail)."""
    return len(os.sched_getaffinity(0)) + 1


CHECKOUT_HISTORY = Path(__file__).resolve().parent.parent / "history.db"


@pytest.fixture(scope="session", autouse=True)
def checkout_history_untouched():
    """The checkout's history.db is the operator's (`make run` writes it): no test may create it.
    A test that starts the exporter from the checkout gives it a history.path of its own. (Only
    checked where there was none: where there is one, the operator's own exporter may be
    writing it while the tests run.)"""
    existed = CHECKOUT_HISTORY.exists()
    yield
    assert existed or not CHECKOUT_HISTORY.exists(), \
        f"a test created {CHECKOUT_HISTORY}: give its exporter a history.path of its own"


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
