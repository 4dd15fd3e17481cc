"""Run the exporter in-process against a simulated node, and read its /metrics like Prometheus."""

from __future__ import annotations

import gzip
import urllib.request
from dataclasses import replace
from typing import Optional

from prometheus_client.parser import text_string_to_metric_families

from exporter.app import build_exporter
from exporter.config import ChainConfig, Config, HistoryConfig, ScopeConfig
from simnode import SIMNODE_GENESIS_HASH


class ExporterUnderTest:
    """``exporter.app.build_exporter`` on a free loopback port, the refresh driven by the test."""

    def __init__(self, endpoint, scope: ScopeConfig = ScopeConfig(), clock=None, history_path: Optional[str] = None,
                 stake_change_ratio: float = 0.05, chain_timeout: float = 10, pool=None,
                 genesis_hash: str = SIMNODE_GENESIS_HASH, cross_check: bool = False, **config_overrides):
        endpoints = (endpoint,) if isinstance(endpoint, str) else tuple(endpoint)
        self.config = replace(
            Config(
                chain=ChainConfig(endpoints=endpoints, timeout_seconds=chain_timeout, genesis_hash=genesis_hash,
                                  cross_check=cross_check),
                scope=scope,
                refresh_timeout_seconds=30,
                history=HistoryConfig(path=history_path or "", stake_change_ratio=stake_change_ratio),
                listen_address="127.0.0.1:0",
            ),
            **config_overrides,
        )
        self.app = build_exporter(self.config, with_history=history_path is not None, clock=clock, pool=pool)
        self.counter, self.session, self.refresher = self.app.counter, self.app.session, self.app.refresher
        self.server = self.app.server
        # The refresh thread runs as in production, but only when the test asks.
        self.app.start(scheduled=False)
        self.url = f"http://127.0.0.1:{self.server.port}"

    def refresh(self) -> bool:
        """One refresh on the exporter's refresh thread; True if it succeeded."""
        return self.refresher.refresh_now(timeout=120).up

    @property
    def snapshot(self):
        """The snapshot the exporter is serving (None before the first good refresh)."""
        data = self.refresher.current().data
        return data.snapshot if data is not None else None

    def get(self, path: str, headers: Optional[dict] = None, method: str = "GET"):
        request = urllib.request.Request(self.url + path, headers=headers or {}, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def scrape(self, gzip_encoding: bool = False) -> dict:
        """{(name, frozenset(labels)): value} for every sample in /metrics."""
        headers = {"Accept-Encoding": "gzip"} if gzip_encoding else {}
        status, response_headers, body = self.get("/metrics", headers)
        assert status == 200
        if response_headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        return parse_exposition(body.decode())

    def close(self) -> None:
        self.app.close()


def parse_exposition(text: str) -> dict:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"duplicate series {key}"
            samples[key] = sample.value
    return samples


def series(samples: dict, name: str, **labels) -> Optional[float]:
    return samples.get((name, frozenset((k, str(v)) for k, v in labels.items())))


def names(samples: dict, name: str) -> list[dict]:
    return [dict(labels) for n, labels in samples if n == name]


def parents_of(samples: dict, hotkey: str, netuid) -> int:
    """Parents of ``hotkey`` on ``netuid``, counted from the edge series as a dashboard does."""
    return sum(1 for n, labels in samples if n == "bittensor_childkey_proportion_ratio"
               and dict(labels).get("child_hotkey") == hotkey and dict(labels).get("netuid") == str(netuid))


def children_of(samples: dict, hotkey: str, netuid) -> int:
    return sum(1 for n, labels in samples if n == "bittensor_childkey_proportion_ratio"
               and dict(labels).get("parent_hotkey") == hotkey and dict(labels).get("netuid") == str(netuid))


def validator_values(samples: dict, hotkey: str, netuid) -> dict:
    """Every number of one validator, read as an operator's queries would: the sparse
    stake_detail families stand for 0 (nothing given or received) or for the root stake
    (no edges) where they are absent, and root stake is the hotkey's."""
    def v(name, **labels):
        return series(samples, name, **labels)

    key = {"hotkey": hotkey, "netuid": netuid}
    root = v("bittensor_hotkey_root_stake_tao", hotkey=hotkey) or 0.0
    parents, children = parents_of(samples, hotkey, netuid), children_of(samples, hotkey, netuid)
    values = {
        "own": v("bittensor_validator_own_stake_alpha", **key),
        "root": root,
        "inherited": v("bittensor_validator_inherited_stake_alpha", **key),
        "stake_weight": v("bittensor_validator_stake_weight_alpha", **key),
        "to_children": v("bittensor_validator_stake_to_children_alpha", **key),
        "from_parents": v("bittensor_validator_stake_from_parents_alpha", **key),
        "inherited_root": v("bittensor_validator_inherited_root_stake_tao", **key),
        "parents": parents,
        "children": children,
    }
    # A sparse series exists exactly when its relationship does.
    assert (values["to_children"] is not None) == (children > 0), (hotkey, netuid, "to_children")
    assert (values["from_parents"] is not None) == (parents > 0), (hotkey, netuid, "from_parents")
    assert (values["inherited_root"] is not None) == (parents + children > 0), (hotkey, netuid, "inherited_root")
    values["to_children"] = values["to_children"] or 0.0
    values["from_parents"] = values["from_parents"] or 0.0
    if values["inherited_root"] is None:
        values["inherited_root"] = root
    return values
