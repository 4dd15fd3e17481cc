"""The table of metric definitions against what the exporter renders: every family served has a
row, and is served with the row's type, help text and label names."""

from __future__ import annotations

import re
from dataclasses import replace

from prometheus_client.parser import text_string_to_metric_families

from exporter.config import COLLECTORS
from exporter.serving.metric_defs import BY_NAME, METRICS, metric
from exporter.serving.status import Status, render_status
from exporter.serving.exposition import render_snapshot
from exporter.snapshot.builder import build_snapshot
from tests.test_golden_exposition import SCOPE, rendered
from tests.test_snapshot import chain_read

import pytest


def suspended_family() -> str:
    """The family only runtimes with ChildkeyThresholdSuspended have, which the golden chain lacks."""
    snapshot = build_snapshot(chain_read(), SCOPE)
    first, *rest = snapshot.validators
    snapshot = replace(snapshot, validators=(replace(first, suspended=True), *rest))
    text = render_snapshot(snapshot, collectors=frozenset({"validator"})).decode()
    start = text.index("# HELP bittensor_validator_childkey_suspended")
    return text[start:text.index("# HELP", start + 1)]


def served_families() -> dict:
    """Every family of the golden exposition and of the status, parsed as Prometheus parses them."""
    text = rendered().decode() + suspended_family() + render_status(Status.initial(("wss://a.example:443",))).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_every_served_family_has_its_row_and_is_served_as_the_row_says():
    families = served_families()
    assert families, "nothing parsed"
    for parsed_name, family in families.items():
        row = BY_NAME.get(parsed_name) or BY_NAME.get(parsed_name + "_total")
        assert row is not None, f"{parsed_name} is served but has no row in METRICS"
        assert family.type == row.type, parsed_name
        assert family.documentation == row.help_text, parsed_name
        for sample in family.samples:
            labels = set(sample.labels) - {"le"}
            assert labels == set(row.labels), f"{sample.name} carries {sorted(labels)}, its row says {row.labels}"


def test_every_row_is_served_somewhere():
    served = set(served_families())
    # The golden chain reads no activity: those rows are rendered, each with its labels, by
    # tests/test_activity_exposition.py::test_every_family_is_rendered_with_the_labels_of_its_row.
    for m in (m for m in METRICS if m.collector not in ("activity", "earnings")):
        assert m.name in served or m.name.removesuffix("_total") in served, f"{m.name} is never rendered"


def test_rows_follow_the_naming_rules():
    for m in METRICS:
        assert re.fullmatch(r"bittensor_[a-z0-9_]+", m.name), m.name
        assert m.type in ("gauge", "counter", "histogram"), m.name
        assert (m.type == "counter") == m.name.endswith("_total"), f"{m.name}: _total is for counters only"
        assert m.collector in COLLECTORS or m.collector == "exporter", m.name
        assert m.help.endswith("."), f"{m.name}: help text ends with a full stop"
        assert len(set(m.labels)) == len(m.labels), m.name


def test_an_unknown_name_names_the_table():
    with pytest.raises(KeyError, match="metric_defs.py"):
        metric("bittensor_no_such_metric")
