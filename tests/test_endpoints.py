"""Endpoint failover: every endpoint is tried, in backoff order, before a refresh fails."""

from __future__ import annotations

import pytest

from exporter.chain.endpoints import EndpointPool
from exporter.chain.session import attempt_budget
from exporter.config import ScopeConfig
from simnode import ChainState, SimNode
from tests import tricky_chain as t
from tests.conftest import write_tricky_chain
from tests.harness import series

URLS = ("ws://a:1", "ws://b:2", "ws://c:3")


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def pool_of(urls=URLS, **kwargs):
    clock = Clock()
    return EndpointPool(urls, clock=clock, jitter=lambda: 1.0, base=10, cap=300, **kwargs), clock


def urls(endpoints) -> list[str]:
    return [e.url for e in endpoints]


def test_all_due_in_configured_order():
    pool, _ = pool_of()
    assert urls(pool.order()) == list(URLS)


def test_backing_off_endpoints_come_last_by_when_their_backoff_ends():
    pool, clock = pool_of()
    a, b, c = pool.endpoints
    pool.failed(a)  # retry at 1010
    pool.failed(b)
    pool.failed(b)  # retry at 1020
    assert urls(pool.order()) == ["ws://c:3", "ws://a:1", "ws://b:2"], "every endpoint, backoff only reorders"
    clock.now = 1015  # a is due again: back in front, in configured order
    assert urls(pool.order()) == ["ws://a:1", "ws://c:3", "ws://b:2"]
    clock.now = 1020
    assert urls(pool.order()) == list(URLS)


def test_when_every_endpoint_backs_off_the_soonest_goes_first_and_ties_keep_configured_order():
    pool, clock = pool_of()
    a, b, c = pool.endpoints
    for endpoint in (c, b, a):
        pool.failed(endpoint)  # all at 1010
    pool.failed(a)  # a at 1020
    assert urls(pool.order()) == ["ws://b:2", "ws://c:3", "ws://a:1"]


def test_backoff_grows_exponentially_is_capped_and_a_success_clears_it():
    pool, clock = pool_of()
    a = pool.endpoints[0]
    assert [pool.failed(a) for _ in range(7)] == [10, 20, 40, 80, 160, 300, 300]
    assert urls(pool.order())[-1] == "ws://a:1"
    pool.succeeded(a)
    assert a.healthy and urls(pool.order()) == list(URLS)


def test_jitter_takes_between_half_and_all_of_the_backoff():
    for jitter, expected in ((0.0, 5.0), (0.5, 7.5), (1.0, 10.0)):
        pool = EndpointPool(URLS, clock=lambda: 0.0, jitter=lambda j=jitter: j, base=10)
        assert pool.failed(pool.endpoints[0]) == expected


@pytest.mark.parametrize("remaining, left, timeout, expected", [
    (120, 1, 30, 120),  # the last endpoint gets what is left
    (120, 2, 30, 90),  # the next one is left a response timeout
    (120, 3, 30, 60),
    (60, 2, 30, 30),  # never less than an equal share
    (6, 2, 1, 5),
    (6, 3, 10, 2),
])
def test_each_try_leaves_time_for_the_endpoints_after_it(remaining, left, timeout, expected):
    assert attempt_budget(remaining, left, timeout) == expected


def test_the_current_endpoint_dies_and_one_still_backing_off_serves_the_same_refresh(exporter_factory):
    state = ChainState()
    write_tricky_chain(state)
    clock = Clock()
    with SimNode(state) as primary, SimNode(state) as secondary:
        pool = EndpointPool((primary.url, secondary.url), clock=clock, jitter=lambda: 1.0, base=60)
        exporter = exporter_factory([primary.url, secondary.url], scope=ScopeConfig(min_stake_weight=100), pool=pool,
                                    chain_timeout=1, refresh_timeout_seconds=6)
        labels = [e.label for e in pool.endpoints]
        pool.failed(pool.endpoints[1])  # the secondary failed a while ago: backing off for 60 s
        assert exporter.refresh()
        assert sum(secondary.requests.values()) == 0
        assert exporter.session.endpoint is pool.endpoints[0]
        primary.stop()  # the endpoint in use dies
        assert exporter.refresh(), "the endpoint still backing off is tried in the same refresh"
        s = exporter.scrape()
        assert series(s, "bittensor_exporter_up") == 1
        assert series(s, "bittensor_exporter_endpoint_up", endpoint=labels[0]) == 0
        assert series(s, "bittensor_exporter_endpoint_up", endpoint=labels[1]) == 1
        assert series(s, "bittensor_exporter_refresh_errors_total", reason="connection") == 0
        assert series(s, "bittensor_validator_inherited_stake_alpha", hotkey=t.M, netuid=1) == t.EXPECTED[t.M]["inherited"] / 1e9
        assert clock.now == 1000.0, "no time had to pass"
