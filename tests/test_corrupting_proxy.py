"""A misbehaving endpoint: a proxy in front of an honest simulated node corrupts chosen answers.

For every corruption mode one refresh goes through the corrupting proxy and
must fail with the honest reason (``invalid`` and the rule broken, or a
decode/rpc error where that is what happened), log the rule in one line,
keep serving exactly what the last good refresh served, and write nothing to
history; the next refresh, with the proxy honest again, must publish the
good chain's values. One node, one proxy and one exporter serve every mode
(the mode is a hook swapped on the proxy); each mode first commits a new
block, so no answer is served from a cache of the last good read.
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable, Optional

import bittensor_core
import pytest
from structlog.testing import capture_logs

from exporter.chain import reader as chain_reader
from exporter.chain import stages as read_stages
from exporter.config import ScopeConfig
from simnode import ChainState, SimNode
from simnode import proxy as p
from simnode.proxy import CorruptingProxy
from simnode.state import GENESIS_TIME_MS
from tests import tricky_chain as t
from tests.conftest import write_tricky_chain
from tests.harness import ExporterUnderTest, parse_exposition, series

SCOPE = ScopeConfig(min_stake_weight=100)
SUBTENSOR = "SubtensorModule"
# Series that move with every block, whatever the chain's values.
MOVING = {"bittensor_chain_block", "bittensor_chain_block_timestamp_seconds"}
MOVING_BYTES = {name.encode() for name in MOVING}
# Caps for this chain (the chain reader's are sized for mainnet): the endless pages stop at
# 2 pages of a netuid map, or once the read's scans were answered 1 MiB.
NETUID_CAP, SCAN_BYTES = 2000, 2**20


@dataclass
class Rig:
    state: ChainState
    node: SimNode
    proxy: CorruptingProxy
    exporter: ExporterUnderTest
    db: str
    good: dict  # the data series of the good chain (block and time aside)
    good_text: bytes  # its rendered snapshot, the same way

    def key(self, item: str, params: list, pallet: str = SUBTENSOR) -> str:
        return "0x" + self.state.key(item, params, pallet).hex()

    def prefix(self, item: str, pallet: str = SUBTENSOR) -> str:
        return self.key(item, [], pallet)

    def encoded(self, item: str, value: Any, pallet: str = SUBTENSOR) -> str:
        rt = self.state.runtime
        return "0x" + bytes(rt.encode(rt.storage_entry(pallet, item).value_type, value)).hex()

    def value_of(self, item: str, params: list, value: Any, pallet: str = SUBTENSOR) -> p.Hook:
        """Answers say ``item[params]`` holds ``value``."""
        return p.replace_values({self.key(item, params, pallet): self.encoded(item, value, pallet)})

    @property
    def block(self) -> int:
        return self.state.finalized.number


@pytest.fixture(autouse=True)
def isolated_runtime_cache():
    """One metadata cache for the module's exporter (set up by ``rig``), not one per test."""


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    env = pytest.MonkeyPatch()
    env.setenv("BITTENSOR_RUNTIME_CACHE_DIR", str(tmp_path_factory.mktemp("runtime-cache")))
    # The full collection after each refused read costs ~60 ms in this big test process, for
    # 35 refusals; test_storage_reader checks it happens, tests/proxy_rss.py what it saves.
    env.setattr(chain_reader, "gc", SimpleNamespace(collect=lambda *a: 0))
    state = ChainState()
    write_tricky_chain(state)
    for _ in range(4):
        state.commit_block()  # block 5: room below it for a header that goes back
    db = str(tmp_path_factory.mktemp("history") / "h.db")
    with SimNode(state) as node, CorruptingProxy(node.url) as proxy:
        exporter = ExporterUnderTest(proxy.url, scope=SCOPE, history_path=db, chain_timeout=1, refresh_timeout_seconds=6)
        try:
            assert exporter.refresh()
            rendered = exporter.refresher.current().data.plain
            assert data(parse_exposition(rendered.decode())) == data(exporter.scrape()), "served as rendered"
            yield Rig(state, node, proxy, exporter, db, data(exporter.scrape()), without_moving(rendered))
        finally:
            exporter.close()
    env.undo()


def served(samples: dict) -> dict:
    """The chain's series: not the exporter's own, not the process's."""
    return {k: v for k, v in samples.items() if k[0].startswith("bittensor_") and not k[0].startswith("bittensor_exporter_")}


def data(samples: dict) -> dict:
    """The chain's series, without those that move with every block."""
    return {k: v for k, v in served(samples).items() if k[0] not in MOVING}


def without_changes(samples: dict) -> dict:
    return {k: v for k, v in samples.items() if k[0] not in ("bittensor_childkey_changes_total", "bittensor_subnet_changes_total")}


def history_rows(db: str) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {name: conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in tables}


def account(i: int) -> str:
    return bittensor_core.ss58_encode(i.to_bytes(32, "big"), 42)


@dataclass(frozen=True)
class Mode:
    name: str
    hook: Callable[[Rig], p.Hook]
    rule: Optional[str]  # the rule an invalid read broke; None for another reason
    reason: str = "invalid"


def _keys_without(prefix_of: Callable[[Rig], list[str]]) -> Callable[[Rig], p.Hook]:
    """Pages that leave out the given keys (the rest of the chain stays consistent)."""
    return lambda rig: p.rewrite_pages(lambda params, keys: [k for k in keys if k not in set(prefix_of(rig))])


MODES = [
    # -- answers that are not answers
    Mode("null result of state_queryStorageAt", lambda r: p.replace_result("state_queryStorageAt", None), "null_answer"),
    Mode("null result of state_getKeysPaged", lambda r: p.replace_result("state_getKeysPaged", None), "null_answer"),
    Mode("null finalized head", lambda r: p.replace_result("chain_getFinalizedHead", None), "block_hash_malformed"),
    Mode("null header (the SDK: block not found)", lambda r: p.replace_result("chain_getHeader", None), None,
         reason="rpc_error"),
    Mode("half the keys of a state_queryStorageAt answer missing", lambda r: p.drop_half_of_the_answer(), "missing_keys"),
    Mode("a key answered that was never asked for",
         lambda r: p.extra_changes([(r.key("ChildKeys", [t.V2, 2]), r.encoded("ChildKeys", [(t.MAX, t.OWNER)]))]),
         "unrequested_key"),
    Mode("a key answered twice", lambda r: p.duplicate_first_change(), "duplicate_key"),
    Mode("values of another block", lambda r: p.other_block(r.state.genesis.hash), "answer_from_other_block"),
    Mode("a value that is not hex", lambda r: p.replace_values({r.key("ChildkeyTake", [t.C2, 1]): "0xzz"}), None,
         reason="decode"),
    # -- key pages
    Mode("ParentKeys keys listed under the ChildKeys prefix",
         lambda r: p.rewrite_pages(lambda params, keys: [
             r.prefix("ParentKeys") + k[len(r.prefix("ChildKeys")):] if params[0] == r.prefix("ChildKeys") else k
             for k in keys]),
         "key_outside_prefix"),
    Mode("a page in descending order", lambda r: p.rewrite_pages(lambda params, keys: sorted(keys, reverse=True)),
         "keys_not_ascending"),
    Mode("a page longer than asked for",
         lambda r: p.made_up_pages(lambda params: [f"{params[0]}{i:08x}" for i in range(1, params[1] + 2)]),
         "page_too_long"),
    Mode("the node ignores the start key (the same full page again)",
         lambda r: p.made_up_pages(lambda params: [f"{params[0]}{i:08x}" for i in range(1, params[1] + 1)]),
         "keys_not_after_start"),
    Mode("listed keys without values", lambda r: p.null_values(r.prefix("ChildKeys")), "listed_key_without_value"),
    Mode("everything emptied (every map)", lambda r: p.rewrite_pages(lambda params, keys: []), "no_root_subnet"),
    # -- the head
    Mode("negative header number", lambda r: p.header_number("-0x5"), "block_number"),
    Mode("header number going back", lambda r: p.header_number(hex(r.block - 3)), "block_went_back"),
    Mode("malformed block hash", lambda r: p.replace_result("chain_getFinalizedHead", "0x" + "ab" * 20), "block_hash_malformed"),
    Mode("block hash that is not hex", lambda r: p.replace_result("chain_getFinalizedHead", "0x" + "zz" * 32),
         "block_hash_malformed"),
    Mode("timestamp 0", lambda r: r.value_of("Now", [], 0, pallet="Timestamp"), "timestamp"),
    Mode("timestamp going back", lambda r: r.value_of("Now", [], GENESIS_TIME_MS, pallet="Timestamp"),
         "timestamp_went_back"),
    # -- child sets
    Mode("child proportions summing past u64::MAX",
         lambda r: r.value_of("ChildKeys", [t.P, 1], [(t.MAX, c) for c in t.CHILDREN]), "proportions_exceed_one"),
    Mode("a duplicated child",
         lambda r: r.value_of("ChildKeys", [t.P, 1], [(t.FIFTH, c) for c in (t.C1, *t.CHILDREN[:4])]), "duplicate_child"),
    Mode("six children",
         lambda r: r.value_of("ChildKeys", [t.P, 1], [(t.FIFTH // 2, c) for c in (*t.CHILDREN, t.M)]), "too_many_children"),
    Mode("10,000 children",
         lambda r: r.value_of("ChildKeys", [t.P, 1], [(1, account(i)) for i in range(10_000)]), "value_too_large"),
    Mode("1,000 children",
         lambda r: r.value_of("ChildKeys", [t.P, 1], [(1, account(i)) for i in range(1000)]), "too_many_children"),
    Mode("a parent its own child", lambda r: r.value_of("ChildKeys", [t.P2, 1], [(t.HALF, t.P2)]), "self_child"),
    # -- stakes
    Mode("root stake above the TAO supply", lambda r: r.value_of("TotalHotkeyAlpha", [t.P, 0], 22_000_000 * t.RAO),
         "stake_above_supply"),
    # -- plausible one by one, implausible next to the last good read: held back
    Mode("a big holder's stake nulled (own stake 0)",
         lambda r: p.replace_values({r.key("TotalHotkeyAlpha", [t.NP, 1]): None}), "stake_dropped"),
    Mode("permits emptied", lambda r: r.value_of("ValidatorPermit", [1], []), "validators_dropped"),
    Mode("most edges gone, consistently",
         _keys_without(lambda r: [r.key("ChildKeys", [t.P, 1])] + [r.key("ParentKeys", [c, 1]) for c in t.CHILDREN]),
         "edges_dropped"),
]


@pytest.mark.parametrize("mode", MODES, ids=[m.name for m in MODES])
def test_a_corrupt_answer_is_refused_and_nothing_of_it_is_published_or_recorded(rig, mode):
    check_refused(rig, mode.hook(rig), mode.reason, mode.rule)


def check_refused(rig: Rig, hook: p.Hook, reason: str, rule: Optional[str]) -> dict:
    """One refresh through ``hook``: refused as said, nothing of it served or recorded; then an honest one.
    Returns the refusal's log line."""
    refresher = rig.exporter.refresher
    rig.state.commit_block()
    before = refresher.current()
    rows = history_rows(rig.db)
    rig.proxy.corrupt = hook
    try:
        with capture_logs() as logs:
            bad = refresher.refresh_now(timeout=60)
    finally:
        rig.proxy.corrupt = None
    assert not bad.up, "the corrupt read is not published"
    assert bad.data is before.data, "the last good snapshot is served, the very same bytes"
    assert sample(bad.status, "bittensor_exporter_refresh_errors_total", reason=reason) == \
        sample(before.status, "bittensor_exporter_refresh_errors_total", reason=reason) + 1
    refusals = [e for e in logs if e.get("reason") is not None and e["log_level"] == "warning"]
    assert len(refusals) == 1, logs
    assert refusals[0]["reason"] == reason and refusals[0].get("rule") == rule, refusals[0]
    if rule is not None and rule.endswith("_dropped"):
        assert refusals[0]["event"] == "refresh held back, needs confirmation"
    assert history_rows(rig.db) == rows, "nothing recorded"
    assert sample(bad.status, "bittensor_exporter_history_writes_total", result="ok") == \
        sample(before.status, "bittensor_exporter_history_writes_total", result="ok")

    good = refresher.refresh_now(timeout=60)
    assert good.up, "the next honest read is published"
    assert without_moving(good.data.plain) == rig.good_text, "the good chain's values"
    assert good.data.snapshot.chain.block == rig.block
    with sqlite3.connect(rig.db) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == rows["events"], "the chain did not change"
    return refusals[0]


def sample(exposition: bytes, name: str, **labels: str) -> float:
    """One sample's value, found in the text (parsing whole pages per mode would double the test's time)."""
    label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    line = re.search(rb"^" + re.escape(f"{name}{{{label_text}}} ".encode()) + rb"(\S+)$", exposition, re.M)
    assert line is not None, (name, labels)
    return float(line.group(1))


def without_moving(exposition: bytes) -> bytes:
    """A rendered snapshot without the lines of the series that move with every block."""
    return b"\n".join(line for line in exposition.split(b"\n") if line.split(b" ", 1)[0] not in MOVING_BYTES)


def test_endless_pages_stop_at_the_cap(rig, monkeypatch):
    """Every key page is another full page of made-up keys (with values): the scans stop at their caps."""
    monkeypatch.setattr(read_stages, "MAX_NETUIDS", NETUID_CAP)
    monkeypatch.setattr(rig.exporter.session._reader, "_max_scan_bytes", SCAN_BYTES)
    rig.proxy.reset_counters()
    check_refused(rig, p.endless_pages(), "invalid", "scan_cap")
    # A page of made-up keys is over 66 kB (1,000 keys of 66 characters and more, with values):
    # at most 16 pages to the budget, one more per scan and shard in flight (7 scans, a few
    # shards each), and the honest read's few.
    pages = SCAN_BYTES // 66_000 + 1 + 7 * 3
    assert rig.proxy.requests["state_getKeysPaged"] <= pages + 7 * 3
    assert rig.proxy.keys_listed <= pages * 1000


def test_an_answer_longer_than_a_node_sends_fails_the_read_without_asking_again(rig):
    """A key page of 15 MiB and a byte, where a node sends at most 15 MiB (chain.max_response_bytes'
    default): the websocket refuses it at its header, the read fails at once naming the setting,
    and the request is not sent again on a new connection."""
    rig.proxy.reset_counters()
    started = time.monotonic()
    refusal = check_refused(rig, p.oversized("state_getKeysPaged", 15 * 2**20 + 1), "invalid", "response_too_large")
    assert time.monotonic() - started < 5, "no waiting on a timeout"
    assert "chain.max_response_bytes (15 MiB" in refusal["detail"] and "exceeds limit of 15728640 bytes" in refusal["detail"]
    status = rig.exporter.refresher.current().status
    assert sample(status, "bittensor_exporter_endpoint_errors_total", endpoint=rig.exporter.session.pool.order()[0].label,
                  reason="invalid") >= 1
    # No page asked again after the refusal: each scan's first page (one shard: the maps are small)
    # once in the refused read, once in the honest one.
    assert rig.proxy.requests["state_getKeysPaged"] <= 2 * 7


def test_a_held_back_read_is_published_when_the_next_read_confirms_it(rig):
    """A real change that looks like corruption: the first read is held back, the next one confirms it."""
    state = rig.state
    state.delete("TotalHotkeyAlpha", [t.NP, 1])  # Z's parent unstakes everything
    state.commit_block()
    try:
        with capture_logs() as logs:
            assert not rig.exporter.refresh()
        held = [e for e in logs if e.get("rule") == "stake_dropped"]
        assert len(held) == 1 and held[0]["event"] == "refresh held back, needs confirmation"
        assert series(rig.exporter.scrape(), "bittensor_validator_own_stake_alpha", hotkey=t.NP, netuid=1) is None
        assert series(rig.exporter.scrape(), "bittensor_validator_inherited_stake_alpha", hotkey=t.Z, netuid=1) == \
            t.EXPECTED[t.Z]["inherited"] / 1e9, "still the last good value"
        state.commit_block()
        assert rig.exporter.refresh(), "confirmed by the next read"
        s = rig.exporter.scrape()
        assert series(s, "bittensor_validator_inherited_stake_alpha", hotkey=t.Z, netuid=1) is None, "Z fell out of scope"
    finally:
        state.set("TotalHotkeyAlpha", [t.NP, 1], t.OWN_ALPHA_1[t.NP])
        state.commit_block()
        with capture_logs():
            rig.exporter.refresh()  # the stake coming back is no loss: published at once
    # Z is a permit holder, so history recorded its stake weight falling and
    # coming back: only the change counters differ from before.
    assert rig.exporter.refresh() and without_changes(data(rig.exporter.scrape())) == without_changes(rig.good)
    # The good chain's values from now on (the rig is the module's: a mode may run after this test).
    rig.good, rig.good_text = data(rig.exporter.scrape()), without_moving(rig.exporter.refresher.current().data.plain)


def test_a_refused_endpoint_counts_as_failed_and_the_next_one_is_used(rig, exporter_factory):
    with CorruptingProxy(rig.node.url) as honest:
        exporter = exporter_factory([rig.proxy.url, honest.url], scope=SCOPE, chain_timeout=1, refresh_timeout_seconds=6)
        assert exporter.refresh()
        rig.state.commit_block()
        rig.proxy.corrupt = rig.value_of("ChildKeys", [t.P, 1], [(t.FIFTH, c) for c in (t.C1, *t.CHILDREN[:4])])
        try:
            honest.reset_counters()
            assert exporter.refresh(), "the honest endpoint's read is published"
        finally:
            rig.proxy.corrupt = None
        s = exporter.scrape()
        labels = [e.label for e in exporter.session.pool.endpoints]
        assert series(s, "bittensor_exporter_endpoint_up", endpoint=labels[0]) == 0
        # "invalid" once the session classifies InvalidRead; a ValueError ("decode") until then.
        assert sum(series(s, "bittensor_exporter_endpoint_errors_total", endpoint=labels[0], reason=r)
                   for r in ("invalid", "decode")) == 1
        assert series(s, "bittensor_exporter_endpoint_up", endpoint=labels[1]) == 1
        assert sum(honest.requests.values()) > 0
        assert data(s) == without_changes(rig.good), "the good chain's values (this exporter keeps no history)"


# States real storage holds though no write path makes them: an honest node can serve them, so they
# are published (and flagged), never refused. The rule is the anomaly each one is flagged as.
HONEST_STATES = [
    Mode("ParentKeys not mirroring ChildKeys", lambda r: r.value_of("ParentKeys", [t.M, 1], [(t.HALF, t.P2)]),
         "parents_do_not_mirror_children"),
    Mode("take above MaxChildkeyTake", lambda r: r.value_of("ChildkeyTake", [t.C2, 1], 20_000), "take_above_max"),
    Mode("MinChildkeyTake above MaxChildkeyTake", lambda r: r.value_of("MinChildkeyTake", [], 20_000),
         "min_take_above_max"),
    Mode("permitted uids without hotkeys",
         lambda r: p.replace_values({r.key("Keys", [1, uid]): None for uid in range(10)}), "permit_without_hotkey"),
]


@pytest.mark.parametrize("mode", HONEST_STATES, ids=[m.name for m in HONEST_STATES])
def test_a_state_the_chain_can_hold_is_published_and_flagged(rig, exporter_factory, mode):
    exporter = exporter_factory(rig.proxy.url, scope=SCOPE, chain_timeout=1, refresh_timeout_seconds=6)  # no history
    assert exporter.refresh()
    rig.state.commit_block()
    rig.proxy.corrupt = mode.hook(rig)
    try:
        assert exporter.refresh(), "published, not refused"
    finally:
        rig.proxy.corrupt = None
    flags = {dict(k)["rule"] for (name, k), _ in exporter.scrape().items() if name == "bittensor_chain_anomalous_entries"}
    assert flags == {mode.rule}
    assert exporter.refresh() and data(exporter.scrape()) == without_changes(data(rig.good)), "the honest chain again"
