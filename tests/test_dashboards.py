"""The Grafana dashboards are well-formed, pick their data source by variable, and query only real metrics.

Metric names are checked against what the exporter actually serves for the
demo chain (simulated node, scenario "demo", docker/demo-config.yaml's scope).
Whether each query returns data is test_stack.py's job.
"""

from __future__ import annotations

import re

import pytest

from tests.dashboard_queries import (
    BUILTIN_VARIABLES,
    HISTORY_METRICS,
    HISTORY_PENDING,
    SCRAPE_SERIES,
    load_dashboards,
    metric_names,
    panels,
    parse_label_values,
    queries,
    variable_query,
    variables,
)
from simnode.demo import demo_chain, demo_scope
from tests.harness import ExporterUnderTest
from simnode import SimNode

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Stable uids: links between dashboards and bookmarks rely on them.
UIDS = {
    "network-overview.json": "bittensor-network-overview",
    "validator-detail.json": "bittensor-validator-detail",
    "exporter-health.json": "bittensor-exporter-health",
}
DASHBOARDS = load_dashboards()


@pytest.fixture(scope="module")
def exported_names(tmp_path_factory) -> set[str]:
    """Sample names in /metrics after one refresh of the demo chain (history enabled)."""
    workdir = tmp_path_factory.mktemp("dashboards")
    with pytest.MonkeyPatch.context() as patch:
        # Module scope runs before the autouse per-test cache fixture: isolate it here too.
        patch.setenv("BITTENSOR_RUNTIME_CACHE_DIR", str(workdir / "runtime-cache"))
        with SimNode(demo_chain()) as node:
            exporter = ExporterUnderTest(node.url, scope=demo_scope(), history_path=str(workdir / "history.db"))
            try:
                assert exporter.refresh()
                return {name for name, _ in exporter.scrape()}
            finally:
                exporter.close()


def test_the_three_dashboards_exist_with_stable_uids():
    assert {name: d["uid"] for name, d in DASHBOARDS.items()} == UIDS


@pytest.mark.parametrize("name", sorted(UIDS))
def test_dashboard_structure(name):
    dashboard = DASHBOARDS[name]
    assert dashboard["title"].startswith("Bittensor / ") and dashboard.get("description")
    assert len(dashboard["uid"]) <= 40  # Grafana's limit
    all_panels = list(panels(dashboard))
    ids = [p["id"] for p in all_panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in all_panels:
        assert panel.get("title"), f"panel {panel['id']} has no title"
        if panel["type"] == "row":
            continue
        assert panel.get("description"), f"{panel['title']}: no description"
        assert panel["datasource"] == DATASOURCE, f"{panel['title']}: datasource must be the $datasource variable"
        targets = panel.get("targets", [])
        assert targets and all(t.get("expr") for t in targets), f"{panel['title']}: every panel queries something"
        for target in targets:
            assert target.get("datasource") == DATASOURCE, f"{panel['title']}/{target['refId']}: datasource"
        ref_ids = [t["refId"] for t in targets]
        assert len(ref_ids) == len(set(ref_ids)), f"{panel['title']}: duplicate refIds"


@pytest.mark.parametrize("name", sorted(UIDS))
def test_variables(name):
    dashboard = DASHBOARDS[name]
    defined = variables(dashboard)
    by_name = {v["name"]: v for v in defined}
    source = by_name.get("datasource")
    assert source and source["type"] == "datasource" and source["query"] == "prometheus"
    for variable in defined:
        query = variable_query(variable)
        if query is not None:
            assert variable["datasource"] == DATASOURCE, variable["name"]
            parse_label_values(query)  # raises on anything else
    used = set()
    for query in queries(dashboard):
        used |= {a or b for a, b in re.findall(r"\$\{(\w+)[^}]*\}|\$([A-Za-z_]\w*)", query.expr)}
    unknown = used - set(by_name) - set(BUILTIN_VARIABLES)
    assert not unknown, f"queries use undefined variables: {unknown}"


def test_validator_detail_is_chosen_by_hotkey_and_subnet():
    by_name = {v["name"]: v for v in variables(DASHBOARDS["validator-detail.json"])}
    assert parse_label_values(variable_query(by_name["hotkey"]))[1] == "hotkey"
    assert parse_label_values(variable_query(by_name["netuid"]))[1] == "netuid"
    assert "bittensor_validator_info" in {
        name for q in queries(DASHBOARDS["validator-detail.json"]) for name in metric_names(q.expr)
    }


@pytest.mark.parametrize("name", sorted(UIDS))
def test_table_columns_name_their_queries(name):
    """A table shows "Value" for one query and "Value #<refId>" per query when it merges several."""
    for panel in panels(DASHBOARDS[name]):
        if panel["type"] != "table":
            continue
        ref_ids = [t["refId"] for t in panel["targets"]]
        wanted = {"Value"} if len(ref_ids) == 1 else {f"Value #{r}" for r in ref_ids}
        shown = next(t for t in panel["transformations"] if t["id"] == "filterFieldsByName")["options"]["include"]["names"]
        assert {n for n in shown if n.startswith("Value")} == wanted, panel["title"]


@pytest.mark.parametrize("name", sorted(UIDS))
def test_links_point_at_existing_dashboards(name):
    text = str(DASHBOARDS[name])
    for uid in re.findall(r"/d/([\w-]+)", text):
        assert uid in UIDS.values(), f"link to unknown dashboard {uid}"


def test_every_metric_a_query_uses_is_exported(exported_names):
    used: dict[str, set[str]] = {}
    for name, dashboard in DASHBOARDS.items():
        exprs = [q.expr for q in queries(dashboard)]
        exprs += [parse_label_values(q)[0] or "" for q in map(variable_query, variables(dashboard)) if q]
        for expr in exprs:
            for metric in metric_names(expr):
                used.setdefault(metric, set()).add(name)
    pending = {m for m in used if m in HISTORY_METRICS and m not in exported_names}
    missing = {m: sorted(where) for m, where in used.items()
               if m not in exported_names and m not in SCRAPE_SERIES and m not in pending}
    assert not missing, f"dashboards query metrics the exporter does not serve: {missing}"
    if pending:
        pytest.xfail(f"{HISTORY_PENDING}: {sorted(pending)}")


@pytest.mark.parametrize("expr, names", [
    ('label_replace(a_ratio{x="$hotkey"}, "hotkey", "$1", "parent_hotkey", "(.+)") * on(hotkey) group_left(alias) max by (hotkey, alias) (info)',
     {"a_ratio", "info"}),
    ("histogram_quantile(0.9, sum by (le) (rate(d_bucket[$__rate_interval]))) or vector(0)", {"d_bucket"}),
    ("time() - last_success offset 5m > bool 1e3 unless on(job) up", {"last_success", "up"}),
    ('count(take >= scalar(max(max_take))) and ignoring(instance) x:recorded{a=~"b|c"}', {"take", "max_take", "x:recorded"}),
])
def test_metric_names_skip_functions_labels_and_strings(expr, names):
    assert metric_names(expr) == names
