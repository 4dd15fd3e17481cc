"""Read the Grafana dashboards of dashboards/: their panels, PromQL queries, variables and metric names."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "dashboards"

# Metrics the history/alerting work (issue 3) adds to the exporter. A dashboard may
# use them before they exist; the tests then say so instead of failing.
HISTORY_METRICS = frozenset({
    "bittensor_childkey_changes_total",
    "bittensor_exporter_history_writes_total",
    "bittensor_exporter_history_last_write_success_timestamp_seconds",
    "bittensor_exporter_history_database_bytes",
})
HISTORY_PENDING = "history metrics (issue 3) not present yet"

# Series Prometheus itself attaches to every scrape, never in the exporter's output.
SCRAPE_SERIES = frozenset({
    "up", "scrape_duration_seconds", "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling", "scrape_series_added",
})

# Grafana's built-in variables, as the stack test sets them: the whole test
# runs in under a minute, so these windows cover every sample it produced.
BUILTIN_VARIABLES = {"__rate_interval": "1m", "__interval": "1s", "__range": "10m"}

_PROMQL_WORDS = frozenset({
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "inf", "nan", "atan2",
})
_LABEL_LISTS = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_IDENTIFIER = re.compile(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(.*),\s*)?(\w+)\s*\)\s*$", re.S)


@dataclass(frozen=True)
class Query:
    dashboard: str  # uid
    panel: str  # title
    ref_id: str
    expr: str


def load_dashboards() -> dict[str, dict]:
    """{file name: parsed dashboard} for every JSON file in dashboards/."""
    return {path.name: json.loads(path.read_text(encoding="utf-8")) for path in sorted(DASHBOARD_DIR.glob("*.json"))}


def panels(dashboard: dict) -> Iterator[dict]:
    """Every panel, including those nested in collapsed rows; rows themselves too."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard: dict) -> list[Query]:
    return [
        Query(dashboard["uid"], panel.get("title", ""), target.get("refId", ""), target["expr"])
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def variables(dashboard: dict) -> list[dict]:
    return dashboard.get("templating", {}).get("list", [])


def variable_query(variable: dict) -> Optional[str]:
    """The PromQL/label_values query of a `query` variable, None for other kinds."""
    if variable.get("type") != "query":
        return None
    query = variable.get("query")
    return query.get("query") if isinstance(query, dict) else query


def parse_label_values(query: str) -> tuple[Optional[str], str]:
    """``label_values(selector, label)`` -> (selector or None, label)."""
    match = _LABEL_VALUES.match(query)
    if not match:
        raise ValueError(f"not a label_values() query: {query!r}")
    return match.group(1), match.group(2)


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, keywords and labels excluded)."""
    text = _STRINGS.sub('""', expr)
    text = _MATCHERS.sub("{}", text)
    text = _RANGES.sub("[]", text)
    text = _LABEL_LISTS.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _PROMQL_WORDS:
            continue
        names.add(name)
    return names


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replace Grafana variables (``$name``, ``${name}``, ``${name:format}``) as Grafana would.

    Unknown names, such as ``$1`` in label_replace(), are left alone, like Grafana does.
    """
    merged = {**BUILTIN_VARIABLES, **values}

    def replace(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        return merged.get(name, match.group(0))

    return _VARIABLE.sub(replace, expr)
