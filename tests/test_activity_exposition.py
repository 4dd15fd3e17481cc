"""The activity and earnings families: which series exist under which collectors, and their values."""

from __future__ import annotations

import subprocess

from exporter.config import COLLECTORS, OFF_BY_DEFAULT, ScopeConfig, WatchedHotkey
from exporter.serving.exposition import render_snapshot
from exporter.snapshot.builder import build_snapshot
from exporter.snapshot.model import frozen
from tests.harness import parse_exposition, series
from tests.test_chain_activity import C, P, small_read

DEFAULT = frozenset(COLLECTORS) - OFF_BY_DEFAULT
WATCH_C = ScopeConfig(min_stake_weight=0, watch=(WatchedHotkey(C, "c"),))
LIVENESS = {"bittensor_validator_last_weights_block", "bittensor_validator_inactive", "bittensor_subnet_activity_cutoff_blocks"}
EARNINGS = {"bittensor_validator_trust_ratio", "bittensor_validator_dividends_ratio", "bittensor_validator_stake_share_ratio",
            "bittensor_validator_emission_alpha", "bittensor_validator_alpha_dividends_alpha",
            "bittensor_validator_root_dividends_alpha", "bittensor_hotkey_delegate_take_ratio",
            "bittensor_childkey_dividends_estimated_alpha", "bittensor_childkey_take_estimated_alpha"}


def samples(collectors=DEFAULT, scope=WATCH_C):
    return parse_exposition(render_snapshot(build_snapshot(small_read(), scope), collectors=collectors).decode())


def hotkeys_of(found, name):
    return {dict(labels).get("hotkey", dict(labels).get("child_hotkey")) for n, labels in found if n == name}


def test_liveness_for_every_validator_earnings_for_the_watched_by_default():
    found = samples()
    assert series(found, "bittensor_validator_last_weights_block", hotkey=C, netuid=1, mechanism=0) == 90
    assert series(found, "bittensor_validator_last_weights_block", hotkey=P, netuid=1, mechanism=0) == 40
    assert hotkeys_of(found, "bittensor_validator_inactive") == {P}, "only where the chain marked it inactive"
    assert series(found, "bittensor_validator_inactive", hotkey=P, netuid=1) == 1
    assert series(found, "bittensor_subnet_activity_cutoff_blocks", netuid=1) == 5000
    for name in EARNINGS:
        assert hotkeys_of(found, name) == {C}, name
    assert series(found, "bittensor_validator_trust_ratio", hotkey=C, netuid=1) == 60000 / 65535
    assert series(found, "bittensor_validator_dividends_ratio", hotkey=C, netuid=1) == 1
    assert series(found, "bittensor_validator_stake_share_ratio", hotkey=C, netuid=1) == 40000 / 60000
    assert series(found, "bittensor_validator_emission_alpha", hotkey=C, netuid=1) == 900 / 1e9
    assert series(found, "bittensor_validator_alpha_dividends_alpha", hotkey=C, netuid=1) == 700 / 1e9
    assert series(found, "bittensor_hotkey_delegate_take_ratio", hotkey=C) == 11796 / 65535
    assert series(found, "bittensor_childkey_dividends_estimated_alpha", parent_hotkey=P, child_hotkey=C, netuid=1) > 0


def test_the_root_part_is_in_the_units_of_the_item_the_runtime_has():
    from dataclasses import replace

    from tests.test_chain_activity import activity_read

    def root_families(item):
        read = small_read(activity=replace(activity_read(root_dividends={(1, C): 5}), root_dividends_item=item))
        found = parse_exposition(render_snapshot(build_snapshot(read, WATCH_C), collectors=DEFAULT).decode())
        return {name: v for (name, _), v in found.items() if name.startswith("bittensor_validator_root_dividends")}

    assert root_families("RootAlphaDividendsPerSubnet") == {"bittensor_validator_root_dividends_alpha": 5 / 1e9}
    assert root_families("TaoDividendsPerSubnet") == {"bittensor_validator_root_dividends_tao": 5 / 1e9}
    assert root_families(None) == {}


def test_liveness_covers_the_watched_and_those_falling_behind_and_everyone_with_activity_all():
    from dataclasses import replace

    from tests.test_chain_activity import activity_read

    def liveness(collectors=DEFAULT, **changes):
        read = small_read(activity=replace(activity_read(active=frozen({1: (True, True)})), **changes))
        found = parse_exposition(render_snapshot(build_snapshot(read, WATCH_C), collectors=collectors).decode())
        return hotkeys_of(found, "bittensor_validator_last_weights_block")

    assert liveness() == {C}, "P set weights 60 blocks ago: within half the cutoff, and not watched"
    assert liveness(last_update=frozen({1: (90, 100 - 2501)})) == {C, P}, "past half the cutoff (5,000)"
    assert liveness(last_update=frozen({1: (90, 100 - 2500)})) == {C}
    assert liveness(active=frozen({1: (True, False)})) == {C, P}, "marked inactive"
    assert liveness(DEFAULT | {"activity_all"}) == {C, P}
    assert liveness(cutoffs=frozen({})) == {C}, "no cutoff read: nobody is past it"


def test_earnings_all_gives_every_validator_in_scope():
    found = samples(DEFAULT | {"earnings_all"})
    for name in EARNINGS - {"bittensor_childkey_dividends_estimated_alpha", "bittensor_childkey_take_estimated_alpha"}:
        assert hotkeys_of(found, name) == {C, P}, name


def test_each_switch_takes_its_families_away():
    names = {name for name, _ in samples(DEFAULT | {"earnings_all", "activity_all"})}
    assert LIVENESS | EARNINGS <= names
    assert not LIVENESS & {name for name, _ in samples(DEFAULT - {"activity"})}
    assert not EARNINGS & {name for name, _ in samples(DEFAULT - {"earnings"})}
    assert LIVENESS <= {name for name, _ in samples(DEFAULT - {"earnings"})}


def test_promtool_check_metrics_is_clean_with_every_family():
    from tests.test_alerting import tool

    text = render_snapshot(build_snapshot(small_read(), WATCH_C), collectors=frozenset(COLLECTORS))
    result = subprocess.run([tool("promtool"), "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


def test_every_family_is_rendered_with_the_labels_of_its_row():
    from dataclasses import replace

    from exporter.serving.activity_exposition import ACTIVITY_METRICS
    from tests.test_chain_activity import activity_read

    found = {}
    for item in ("RootAlphaDividendsPerSubnet", "TaoDividendsPerSubnet"):
        read = small_read(activity=replace(activity_read(root_dividends={(1, C): 5}), root_dividends_item=item))
        text = render_snapshot(build_snapshot(read, WATCH_C), collectors=frozenset(COLLECTORS)).decode()
        for (name, labels), _ in parse_exposition(text).items():
            found.setdefault(name, set()).add(frozenset(k for k, _ in labels))
    for name, kind, labels, _, collector in ACTIVITY_METRICS:
        assert found.get(name) == {frozenset(labels)}, name
        assert kind == "gauge" and collector in COLLECTORS
