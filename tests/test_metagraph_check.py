"""The chain's own numbers as a check: the metagraph runtime API against the exporter's formulas, over the wire."""

from __future__ import annotations

import simnode.rpc
from exporter.config import ScopeConfig, WatchedHotkey
from tests import tricky_chain as t
from tests.harness import series

# P is watched and registered on subnet 1 (the tricky chain's parents, children, root stake and
# a uid without a permit): that subnet is checked at every refresh.
SCOPE = ScopeConfig(min_stake_weight=100, watch=(WatchedHotkey(t.P, "parent"),))


def test_the_chains_own_inherited_stakes_and_stake_weights_equal_ours(tricky_node, exporter_factory):
    exporter = exporter_factory(tricky_node, scope=SCOPE)
    assert exporter.refresh()
    assert series(exporter.scrape(), "bittensor_subnet_metagraph_difference_rao", netuid=1) == 0
    assert series(exporter.scrape(), "bittensor_subnet_metagraph_difference_rao", netuid=2) is None, "P is not on subnet 2"


def test_a_formula_that_differs_by_one_rao_is_seen(tricky_node, exporter_factory, monkeypatch):
    """A test double of the runtime whose inherited alpha of one uid is one rao off."""
    honest = simnode.rpc.selective_metagraph

    def off_by_one(runtime, storage, netuid, indexes):
        answer = honest(runtime, storage, netuid, indexes)
        if answer is not None and answer.get("alpha_stake"):
            answer["alpha_stake"] = [answer["alpha_stake"][0] + 1, *answer["alpha_stake"][1:]]
        return answer

    monkeypatch.setattr(simnode.rpc, "selective_metagraph", off_by_one)
    exporter = exporter_factory(tricky_node, scope=SCOPE)
    assert exporter.refresh()
    assert series(exporter.scrape(), "bittensor_subnet_metagraph_difference_rao", netuid=1) == 1


def test_the_check_costs_a_few_requests_and_only_for_watched_subnets(tricky_node, exporter_factory):
    exporter = exporter_factory(tricky_node, scope=ScopeConfig(min_stake_weight=100))
    assert exporter.refresh()
    assert not [k for k in exporter.scrape() if k[0] == "bittensor_subnet_metagraph_difference_rao"]
    assert exporter.counter.totals().get("state_call", 0) <= 3, "metadata only: nothing watched, nothing checked"
