"""The Grafana dashboards are well-formed, pick their data source by variable, and query only real metrics.

Metric names are checked against what the exporter actually serves for the
demo chain (simulated node, scenario "demo", docker/demo-config.yaml's scope).
Whether each query returns data is test_stack.py's job.
"""

from __future__ import annotations

import re

import pytest

from tests.dashboard_queries import (
    ALERTS_INSTANCE_MATCHER,
    BUILTIN_VARIABLES,
    INSTANCE_MATCHER,
    RULE_SERIES,
    SCRAPE_SERIES,
    dashboard_chain,
    load_dashboards,
    metric_names,
    panels,
    parse_label_values,
    parse_query_result,
    queries,
    query_result_lines,
    selectors,
    variable_exprs,
    variable_options,
    variable_query,
    variables,
)
from simnode.demo import change_chain, demo_scope
from tests.harness import ExporterUnderTest
from simnode import SimNode

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Stable uids: links between dashboards and bookmarks rely on them.
UIDS = {
    "network-overview.json": "bittensor-network-overview",
    "validator-detail.json": "bittensor-validator-detail",
    "exporter-health.json": "bittensor-exporter-health",
    "my-validators.json": "bittensor-my-validators",
}
INSTANCE_QUERY = "label_values(bittensor_exporter_up, instance)"
# Aggregations straight over exporter series (or their rate/increase): with two exporters
# scraped under one job they would count every series twice, unless kept per instance.
_RAW_AGGREGATION = re.compile(
    r"\b(sum|count|avg|quantile|topk|bottomk|count_values|stddev|stdvar)\s*(?:by\s*\(([^)]*)\)\s*)?"
    r"\(\s*(?:[\d.]+\s*,\s*)?(?:(?:rate|increase|irate|delta|deriv)\s*\(\s*)?[a-zA-Z_:][\w:]*\s*\{")
DASHBOARDS = load_dashboards()


@pytest.fixture(scope="module")
def exported_names(tmp_path_factory) -> set[str]:
    """Sample names in /metrics after two refreshes of the demo chain (history enabled), with a
    change in between, so the change families exist."""
    workdir = tmp_path_factory.mktemp("dashboards")
    with pytest.MonkeyPatch.context() as patch:
        # Module scope runs before the autouse per-test cache fixture: isolate it here too.
        patch.setenv("BITTENSOR_RUNTIME_CACHE_DIR", str(workdir / "runtime-cache"))
        state = dashboard_chain()
        with SimNode(state) as node:
            exporter = ExporterUnderTest(node.url, scope=demo_scope(), history_path=str(workdir / "history.db"))
            try:
                assert exporter.refresh()
                change_chain(state, 0)
                assert exporter.refresh()
                return {name for name, _ in exporter.scrape()}
            finally:
                exporter.close()


def test_the_dashboards_exist_with_stable_uids():
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
def test_panels_fit_the_grid_without_overlapping(name):
    placed = [(p["title"], p["gridPos"]) for p in DASHBOARDS[name]["panels"]]
    for i, (title, a) in enumerate(placed):
        assert a["x"] + a["w"] <= 24, f"{title} is wider than the dashboard"
        for other, b in placed[i + 1:]:
            overlap = a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]
            assert not overlap, f"{title} overlaps {other}"


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
            variable_exprs(query)  # label_values() or query_result(); raises on anything else
    used = set()
    for query in queries(dashboard):
        used |= {a or b for a, b in re.findall(r"\$\{(\w+)[^}]*\}|\$([A-Za-z_]\w*)", query.expr)}
    unknown = used - set(by_name) - set(BUILTIN_VARIABLES)
    assert not unknown, f"queries use undefined variables: {unknown}"


@pytest.mark.parametrize("name", sorted(UIDS))
def test_every_dashboard_picks_exporter_instances(name):
    """An `instance` variable (all exporters by default) that every other variable may depend on."""
    defined = variables(DASHBOARDS[name])
    names = [v["name"] for v in defined]
    instance = defined[names.index("instance")]
    assert variable_query(instance) == INSTANCE_QUERY
    assert instance["multi"] and instance["includeAll"]
    # No allValue: "All" is the regex of the exporters offered, so generic series (up,
    # process_*) of other jobs' targets never join in.
    assert "allValue" not in instance
    assert names.index("instance") == 1, "instance comes right after the data source: the others filter on it"


@pytest.mark.parametrize("name", sorted(UIDS))
def test_every_selector_filters_on_the_instance_variable(name):
    """Two exporters of one job are two copies of every series: each query reads the instances picked."""
    dashboard = DASHBOARDS[name]
    exprs = [(f"{q.panel}/{q.ref_id}", q.expr) for q in queries(dashboard)]
    exprs += [(f"variable {v['name']}", e) for v in variables(dashboard) if v["name"] != "instance" and variable_query(v)
              for e in variable_exprs(variable_query(v))]
    for where, expr in exprs:
        assert INSTANCE_MATCHER in expr or ALERTS_INSTANCE_MATCHER in expr, where
        for metric, matchers in selectors(expr):
            wanted = ALERTS_INSTANCE_MATCHER if metric == "ALERTS" else INSTANCE_MATCHER
            assert wanted in matchers, f"{where}: {metric or '{...}'} selects every instance\n{expr}"


@pytest.mark.parametrize("name", sorted(UIDS))
def test_aggregations_never_add_up_instances(name):
    """sum/count/quantile/topk only over series already reduced with max by(...) / max without(instance),
    or kept per instance (exporter health): two exporters show the numbers of one."""
    for query in queries(DASHBOARDS[name]):
        for match in _RAW_AGGREGATION.finditer(query.expr):
            by = {label.strip() for label in (match.group(2) or "").split(",")}
            assert "instance" in by, f"{query.panel}/{query.ref_id}: {match.group(0)}... adds up exporter instances"


def _picker(name: str) -> dict:
    return {v["name"]: v for v in variables(DASHBOARDS[name])}["hotkey"]


@pytest.mark.parametrize("name", ["validator-detail.json", "my-validators.json"])
def test_validators_are_picked_by_alias(name):
    """The hotkey variable shows aliases (text) and passes hotkeys (value), watched keys first."""
    picker = _picker(name)
    expr = parse_query_result(variable_query(picker))
    assert expr and 'watched="true"' in expr
    watched = "5FeCZE1NBqdJX4VxVZwgJLdz2DmEicJpPzbQuNgBR5bQc1xa"
    other = "5GLzbmMHbHpUJppTpWA7cFCyDnKY2mmqeCMPiN3rc42zZG67"
    # What Prometheus answers for query_result(), in the order it answers.
    answer = [
        {"metric": {"alias": "demo-validator", "hotkey": watched}, "value": [1767225600.0, "1e+18"]},
        {"metric": {"hotkey": other}, "value": [1767225600.0, "4798.03"]},
    ]
    assert variable_options(query_result_lines(answer), picker["regex"]) == [("demo-validator", watched), (other, other)]
    if name == "validator-detail.json":
        assert picker["sort"] == 0, "keep the query's order: watched first, then by stake weight"
        assert "sort_desc(" in expr and not picker["multi"]
    else:
        assert picker["multi"] and picker["includeAll"] and picker["allValue"] == ".*"


def test_validator_detail_is_chosen_by_hotkey_and_subnet():
    by_name = {v["name"]: v for v in variables(DASHBOARDS["validator-detail.json"])}
    assert "hotkey" in parse_query_result(variable_query(by_name["hotkey"]))
    selector, label = parse_label_values(variable_query(by_name["netuid"]))
    assert label == "netuid" and 'hotkey="$hotkey"' in selector
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


@pytest.mark.parametrize("name", sorted(UIDS))
def test_links_carry_the_data_source_and_the_exporters(name):
    dashboard = DASHBOARDS[name]
    for link in dashboard["links"]:
        assert link["includeVars"] or "${instance:queryparam}" in link["url"], link["title"]
        assert link["keepTime"], link["title"]
    for panel in panels(dashboard):
        for override in panel.get("fieldConfig", {}).get("overrides", []):
            for prop in override["properties"]:
                for link in prop["value"] if prop["id"] == "links" else []:
                    assert "${datasource:queryparam}" in link["url"] and "${instance:queryparam}" in link["url"], panel["title"]


def test_my_validators_lists_watched_validators_and_links_onwards():
    dashboard = DASHBOARDS["my-validators.json"]
    table = next(p for p in panels(dashboard) if p["title"] == "My validators by subnet")
    assert all('watched="true"' in t["expr"] for t in table["targets"])
    columns = next(t for t in table["transformations"] if t["id"] == "organize")["options"]["renameByName"].values()
    assert {"alias", "netuid", "stake weight (alpha)", "permit margin (alpha)", "take", "expected take", "parents",
            "from parents (alpha)", "pending cuts", "pending revocation", "last change"} <= set(columns)
    linked = {re.search(r"/d/([\w-]+)", link["url"]).group(1) for link in dashboard["links"] if link["type"] == "link"}
    assert linked == {"bittensor-validator-detail", "bittensor-network-overview"}
    assert all(link["includeVars"] for link in dashboard["links"])


def test_every_metric_a_query_uses_is_exported(exported_names):
    used: dict[str, set[str]] = {}
    for name, dashboard in DASHBOARDS.items():
        exprs = [q.expr for q in queries(dashboard)]
        exprs += [e for q in map(variable_query, variables(dashboard)) if q for e in variable_exprs(q)]
        for expr in exprs:
            for metric in metric_names(expr):
                used.setdefault(metric, set()).add(name)
    missing = {m: sorted(where) for m, where in used.items()
               if m not in exported_names and m not in SCRAPE_SERIES and m not in RULE_SERIES}
    assert not missing, f"dashboards query metrics the exporter does not serve: {missing}"


@pytest.mark.parametrize("expr, names", [
    ('label_replace(a_ratio{x="$hotkey"}, "hotkey", "$1", "parent_hotkey", "(.+)") * on(hotkey) group_left(alias) max by (hotkey, alias) (info)',
     {"a_ratio", "info"}),
    ("histogram_quantile(0.9, sum by (le) (rate(d_bucket[$__rate_interval]))) or vector(0)", {"d_bucket"}),
    ("time() - last_success offset 5m > bool 1e3 unless on(job) up", {"last_success", "up"}),
    ('count(take >= scalar(max(max_take))) and ignoring(instance) x:recorded{a=~"b|c"}', {"take", "max_take", "x:recorded"}),
])
def test_metric_names_skip_functions_labels_and_strings(expr, names):
    assert metric_names(expr) == names


@pytest.mark.parametrize("expr, found", [
    ('sum by (le) (rate(a_bucket{x="}", instance=~"$instance"}[5m])) or vector(0)',
     [("a_bucket", 'x="}", instance=~"$instance"')]),
    ('label_replace(b{instance=~"$instance"}, "hotkey", "$1", "parent_hotkey", "(.+)") * on(hotkey) group_left(alias) c',
     [("b", 'instance=~"$instance"'), ("c", "")]),
    ('{__name__="d"} offset 5m > bool 1e3', [("", '__name__="d"')]),
])
def test_selectors_pair_metrics_with_their_matchers(expr, found):
    assert selectors(expr) == found


def test_variable_options_follow_grafana():
    assert variable_options(["b", "a", "b"]) == [("b", "b"), ("a", "a")]
    assert variable_options(["x1", "y2"], "/x(\\d)/") == [("1", "1")]
    assert variable_options(['{alias="",hotkey="h"} 1 2'], '/alias="(?<text>[^"]*)",hotkey="(?<value>[^"]+)"/') == [("h", "h")]


# A 1080p screen shows about 26 grid rows of 30 px below Grafana's bars.
FIRST_SCREEN_ROWS = 26


def test_my_validators_answers_am_i_ok_without_scrolling():
    """The status per validator, the firing alerts, the permit-loss projections and the last changes
    (with the counts) fit the first screen."""
    by_title = {p["title"]: p for p in panels(DASHBOARDS["my-validators.json"])}
    for title in ("Status", "Firing alerts", "Permit-loss projections", "Last changes", "Pending warnings",
                  "Permit losses projected", "At risk or stale", "Alerts firing", "Data age"):
        position = by_title[title]["gridPos"]
        assert position["y"] + position["h"] <= FIRST_SCREEN_ROWS, f"{title} is below the fold: {position}"
    assert all(t["expr"].count("ALERTS{") for t in by_title["Firing alerts"]["targets"])
    assert "projected_permit_after_pending" in by_title["Permit-loss projections"]["targets"][0]["expr"]


def test_my_validators_status_is_one_row_per_hotkey_with_a_drill_down():
    status = next(p for p in panels(DASHBOARDS["my-validators.json"]) if p["title"] == "Status")
    for target in status["targets"]:
        assert re.search(r"\+ on\(hotkey\) group_left\(alias\)", target["expr"]), target["refId"]
        assert "netuid" not in target["expr"].rsplit("group_left(alias)", 1)[1]
    links = [prop["value"][0]["url"] for o in status["fieldConfig"]["overrides"] for prop in o["properties"] if prop["id"] == "links"]
    assert links and all("var-hotkey=${__data.fields[\"hotkey\"]}" in url and "var-netuid" not in url for url in links)


def test_my_validators_counts_only_the_watched_hotkeys_picked():
    """Under "All" ($hotkey = .*) a count over the network's series would count every validator (65
    pending warnings shown where the watched validators had 4): every hotkey-keyed series is joined
    with the watched hotkeys picked or read through the watch list."""
    watched = 'bittensor_validator_info{watched="true", hotkey=~"$hotkey"'
    for query in queries(DASHBOARDS["my-validators.json"]):
        expr = query.expr
        keyed = re.findall(r"(bittensor_(?:validator|childkey)_\w+)\{", expr)
        if any(not name.startswith("bittensor_validator_info") for name in keyed):
            assert watched in expr or "bittensor_watched_hotkey_found" in expr, f"{query.panel}/{query.ref_id} counts the network"


def test_my_validators_counts_changes_from_the_last_change_metrics():
    """Not increase() of a counter that starts at 1 with the first change (which never shows)."""
    for query in queries(DASHBOARDS["my-validators.json"]):
        assert "changes_total" not in query.expr and "increase(" not in query.expr, f"{query.panel}/{query.ref_id}"
    changes = next(p for p in panels(DASHBOARDS["my-validators.json"]) if p["title"] == "Last changes")
    assert all("bittensor_validator_last_change_" in t["expr"] for t in changes["targets"])
    assert "kind=" not in str(changes["targets"]), "every kind, stake moves included"


def test_the_detail_picker_offers_the_watched_and_the_strongest_not_the_network():
    picker = _picker("validator-detail.json")
    expr = parse_query_result(variable_query(picker))
    limit = re.search(r"topk\((\d+),", expr)
    assert limit and int(limit.group(1)) <= 100, expr


def test_change_counters_count_their_first_event():
    """A *_changes_total series is born at 1 with its first event: increase() alone never shows it."""
    for name, dashboard in DASHBOARDS.items():
        for query in queries(dashboard):
            if "_changes_total" in query.expr:
                assert "offset" in query.expr, f"{name} {query.panel}/{query.ref_id}: the first change never shows"


def _columns(panel: dict) -> list[str]:
    return list(next(t for t in panel["transformations"] if t["id"] == "organize")["options"]["renameByName"].values())


def test_is_it_working_and_earning_is_answered_where_the_operator_looks():
    """My validators' status row per validator has its liveness and earnings; the detail plots blocks since
    the last weight set per mechanism against half the cutoff and the cutoff; the network's falling-behind
    table lists the stalest first."""
    by_title = {p["title"]: p for p in panels(DASHBOARDS["my-validators.json"])}
    assert {"status", "permits", "losses projected", "blocks since weights", "of cutoff", "inactive", "vtrust (lowest)",
            "dividends / stake share (lowest)"} <= set(_columns(by_title["Status"]))
    detail = {p["title"]: p for p in panels(DASHBOARDS["validator-detail.json"])}
    weights = detail["Blocks since last weight set"]["targets"]
    assert [t["legendFormat"] for t in weights] == ["mechanism {{mechanism}}", "half the cutoff", "cutoff"]
    assert weights[1]["expr"] == f"0.5 * {weights[2]['expr']}" and "activity_cutoff_blocks" in weights[2]["expr"]
    behind = next(p for p in panels(DASHBOARDS["network-overview.json"]) if p["title"] == "Falling behind")
    assert behind["options"]["sortBy"] == [{"displayName": "of cutoff", "desc": True}]


def test_blocks_since_weights_are_per_exporter_before_the_pair_is_folded():
    """An exporter a few blocks behind must not make a validator look staler than it is: each exporter's
    block minus its own LastUpdate, then the freshest exporter (min), as BittensorValidatorWeightsStale does."""
    per_exporter = re.compile(r"min by \(hotkey, netuid, mechanism\) \(bittensor_chain_block\{[^}]*\} - on\(instance, job\) "
                              r"group_right\(\) bittensor_validator_last_weights_block\{")
    found = 0
    for dashboard in DASHBOARDS.values():
        for query in queries(dashboard):
            uses = query.expr.count("bittensor_validator_last_weights_block")
            assert uses == len(per_exporter.findall(query.expr)), f"{query.panel}/{query.ref_id}"
            found += uses
    assert found >= 10


def test_the_chain_state_row_says_none_and_what_every_rule_means():
    """Network overview's Chain state row is open (never collapsed) right under the scope numbers, reads
    "none" when empty (the normal state), and tells what every rule the exporter flags means."""
    from exporter.snapshot.anomalies import RULES

    placed = DASHBOARDS["network-overview.json"]["panels"]
    titles = [p["title"] for p in placed]
    row = placed[titles.index("Chain state")]
    assert row["type"] == "row" and not row["collapsed"] and titles.index("Chain state") < titles.index("Weight setting")
    for title in ("Unusual chain states", "Subnets being dissolved"):
        panel = placed[titles.index(title)]
        assert panel["fieldConfig"]["defaults"]["noValue"] == "none", title
        assert panel["gridPos"]["y"] == row["gridPos"]["y"] + 1, f"{title} is not in the Chain state row"
    table = placed[titles.index("Unusual chain states")]
    assert "docs/chain-states.md" in table["description"]
    meanings = next(o for o in table["fieldConfig"]["overrides"] if o["matcher"]["options"] == "what it means")
    mapped = next(p["value"][0]["options"] for p in meanings["properties"] if p["id"] == "mappings")
    assert set(mapped) == set(RULES) and all(m["text"] for m in mapped.values())
    assert all(rule in table["description"] for rule in RULES)
