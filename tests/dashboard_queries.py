"""Read the Grafana dashboards of dashboards/: their panels, PromQL queries, variables and metric names."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "dashboards"

# Series Prometheus itself attaches to every scrape, never in the exporter's output.
SCRAPE_SERIES = frozenset({
    "up", "scrape_duration_seconds", "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling", "scrape_series_added",
})

# Series Prometheus writes from the alert rules (the firing alerts panels read them).
RULE_SERIES = frozenset({"ALERTS"})

# dashboard_chain's chain states: MaxChildkeyTake lowered to 1 % of u16::MAX (from 18 %), and the
# subnet being dissolved.
MAX_TAKE = 655
DISSOLVING = 3

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
_QUERY_RESULT = re.compile(r"^\s*query_result\((.*)\)\s*$", re.S)
_JS_REGEX = re.compile(r"^/(.*)/([gimsuy]*)$", re.S)
# Every dashboard has an `instance` variable (exporter instances); every selector filters on it.
INSTANCE_MATCHER = 'instance=~"$instance"'
# ALERTS of per-validator rules carry no instance (they aggregate over the exporters), those of the
# exporter rules carry theirs: an alerts query reads both.
ALERTS_INSTANCE_MATCHER = 'instance=~"$instance|"'


def dashboard_chain():
    """The demo chain as the compose demo and `make demo` serve it (simnode.demo), plus what
    the panels need to show data: the demo's parent inactive on the detail subnet (the chain run
    through the subnets' first epochs, every other permit holder setting weights); on subnet 1, a contender that staked up (a permit
    holder loses its permit at the next epoch) and a holder's pending child set, due before the
    next epoch, that gives its stake to a uid without a permit (both swap at the epoch after);
    and a watched validator the next epoch takes a permit from (My validators' permit-loss
    projections): on another subnet where it holds one, nearly all its own stake unstaked and
    MaxAllowedValidators cut to 5, so it ranks below the fifth. And two chain states the write paths
    would not make (the Chain state row, docs/chain-states.md): MaxChildkeyTake lowered to 1 %
    (MAX_TAKE) under the takes already set, so every non-zero take of a tracked validator, the detail
    validator's that change_chain sets (1,000-3,000 of 65,535) among them, is take_above_max; and the
    one subnet left (DISSOLVING: neither the detail subnet nor the two above) dissolved, its cleanup
    stopped after its first phase (stake totals deleted, ValidatorPermit, Keys, ChildKeys, ParentKeys
    and its pending set still there), so it is bittensor_subnet_dissolving."""
    from simnode.actions import set_max_childkey_take
    from simnode.activity import set_weights
    from simnode.dissolution import dissolve_network
    from simnode.demo import DETAIL_NETUID, STALE_NETUID, demo_chain, demo_scope, holders_set_weights
    from simnode.epoch import advance_to, epoch_permits, next_epoch_block, stake_weights

    state = demo_chain()
    # Through the first epoch of the demo's stale subnet (and the other subnets' first epochs),
    # every permit holder setting weights just before it but the demo's parent: the epoch marks
    # the parent inactive, its weights long past the 12-block cutoff (the falling-behind and
    # inactive panels have rows), and the earnings are an epoch's.
    epoch = next_epoch_block(state.head.number, STALE_NETUID, state.get("Tempo", [STALE_NETUID]))
    advance_to(state, epoch - 2)
    holders_set_weights(state)
    set_weights(state, STALE_NETUID, _uid(state, STALE_NETUID, demo_scope().watch[0].hotkey))  # the detail validator stays active
    advance_to(state, epoch + 1)
    netuid = 1 if DETAIL_NETUID != 1 else 3
    # Neither watched keys nor the owner (who keeps a permit whatever its stake), nor uids with childkeys.
    watched = {key.hotkey for key in demo_scope().watch} | {state.get("SubnetOwnerHotkey", [netuid])}
    hotkeys = [state.get("Keys", [netuid, uid]) for uid in range(state.get("SubnetworkN", [netuid]))]
    permits = state.get("ValidatorPermit", [netuid])
    weights = stake_weights(state, netuid)
    free = [uid for uid in sorted(range(len(hotkeys)), key=lambda u: -weights[u])
            if not permits[uid] and hotkeys[uid] not in watched
            and not state.get("ChildKeys", [hotkeys[uid], netuid]) and not state.get("ParentKeys", [hotkeys[uid], netuid])]
    holders = sorted((uid for uid in range(len(hotkeys)) if permits[uid] and hotkeys[uid] not in watched
                      and not state.get("ChildKeys", [hotkeys[uid], netuid]) and not state.get("ParentKeys", [hotkeys[uid], netuid])),
                     key=lambda u: -weights[u])
    contender, receiver, giver = free[0], free[1], holders[0]
    state.set("TotalHotkeyAlpha", [hotkeys[contender], netuid], int(max(weights) * 2))  # rao
    head = state.head.number
    state.set("PendingChildKeys", [netuid, hotkeys[giver]], ([(2**64 - 1, hotkeys[receiver])], head))
    validator = demo_scope().watch[0].hotkey
    losing = next(n for n in range(1, state.get("TotalNetworks", []) or 16)
                  if n not in (netuid, DETAIL_NETUID) and _holds_permit(state, n, validator))
    state.set("TotalHotkeyAlpha", [validator, losing], 10**9)  # 1 alpha
    state.set("MaxAllowedValidators", [losing], 5)
    set_max_childkey_take(state, MAX_TAKE)  # sudo: no stored take is touched
    assert DISSOLVING not in (netuid, losing, DETAIL_NETUID, STALE_NETUID)
    cleanup = dissolve_network(state, DISSOLVING)  # out of NetworksAdded, NetworkRemoved
    # The block's on_idle runs the first phase (stake totals); the cleanup stops there.
    assert cleanup.step() == "stake_totals"
    state.commit_block()
    assert epoch_permits(state, netuid) != permits, "the contender takes a permit at the next epoch"
    losing_uid = _uid(state, losing, validator)
    assert not epoch_permits(state, losing)[losing_uid], "the next epoch takes the watched validator's permit"
    assert state.get("ValidatorPermit", [DISSOLVING]) and not state.get("NetworksAdded", [DISSOLVING])
    return state


def _uid(state, netuid: int, hotkey: str):
    keys = [state.get("Keys", [netuid, uid]) for uid in range(state.get("SubnetworkN", [netuid]) or 0)]
    return keys.index(hotkey) if hotkey in keys else None


def _holds_permit(state, netuid: int, hotkey: str) -> bool:
    uid = _uid(state, netuid, hotkey)
    return uid is not None and bool(state.get("ValidatorPermit", [netuid])[uid])


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


def parse_query_result(query: str) -> Optional[str]:
    """``query_result(expr)`` -> expr; None for any other variable query."""
    match = _QUERY_RESULT.match(query)
    return match.group(1) if match else None


def variable_exprs(query: str) -> list[str]:
    """The PromQL a variable query evaluates: label_values()' selector or query_result()'s expression."""
    expr = parse_query_result(query)
    if expr is not None:
        return [expr]
    selector, _ = parse_label_values(query)
    return [selector] if selector else []


def query_result_lines(result: list[dict]) -> list[str]:
    """An instant query's samples as Grafana's query_result() shows them to the variable's regex:
    ``name{label="value",...} value timestamp_ms``, labels in the order Prometheus returns them."""
    lines = []
    for sample in result:
        labels = dict(sample["metric"])
        name = labels.pop("__name__", "")
        label_part = ",".join(f'{k}="{v}"' for k, v in labels.items())
        timestamp, value = sample["value"]
        lines.append(f"{name}{{{label_part}}} {value} {int(float(timestamp) * 1000)}")
    return lines


def variable_options(values: list[str], regex: str = "") -> list[tuple[str, str]]:
    """(text, value) options as Grafana derives them from query answers and the variable's regex.

    Like Grafana: no regex keeps every value as its own text; a regex with named groups ``text``
    and/or ``value`` uses them (an empty group falls back to the other); otherwise the first
    capture group, or the whole value when the regex has none. Values it does not match are
    dropped, and duplicates (by value) are kept once.
    """
    pattern = None
    if regex:
        match = _JS_REGEX.match(regex)
        source, flags = (match.group(1), match.group(2)) if match else (regex, "")
        pattern = re.compile(source.replace("(?<", "(?P<").replace("(?P<=", "(?<=").replace("(?P<!", "(?<!"),
                             re.I if "i" in flags else 0)
    options, seen = [], set()
    for raw in values:
        text = value = raw
        if pattern is not None:
            found = pattern.search(raw)
            if not found:
                continue
            groups = found.groupdict()
            if groups.get("value") or groups.get("text"):
                value = groups.get("value") or groups.get("text")
                text = groups.get("text") or groups.get("value")
            elif found.groups():
                text = value = found.group(1)
        if value not in seen:
            seen.add(value)
            options.append((text, value))
    return options


def selectors(expr: str) -> list[tuple[str, str]]:
    """Every vector selector of a PromQL expression: (metric name, matcher text without braces)."""
    masked = _STRINGS.sub(lambda m: m.group(0)[0] + "~" * (len(m.group(0)) - 2) + m.group(0)[-1], expr)
    blanked = _RANGES.sub(lambda m: " " * len(m.group(0)), masked)
    blanked = _LABEL_LISTS.sub(lambda m: " " * len(m.group(0)), blanked)
    matchers = {m.start(): m for m in _MATCHERS.finditer(blanked)}
    outside = _MATCHERS.sub(lambda m: " " * len(m.group(0)), blanked)
    found, used = [], set()
    for match in _IDENTIFIER.finditer(outside):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _PROMQL_WORDS:
            continue
        rest = match.end()
        while rest < len(blanked) and blanked[rest].isspace():
            rest += 1
        braces = matchers.get(rest)
        if braces is not None:
            used.add(rest)
            found.append((name, expr[braces.start() + 1:braces.end() - 1]))
        else:
            found.append((name, ""))
    found += [("", expr[m.start() + 1:m.end() - 1]) for start, m in matchers.items() if start not in used]
    return found


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
