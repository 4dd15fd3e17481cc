"""The exporter's own health, as an immutable record advanced once per refresh and rendered with it.

Nothing here is a live metrics object: the refresh thread folds each
refresh's outcome into a new ``Status`` (a pure function) and renders it into
the publication, so every self-metric on a page describes the same refresh
as the data beside it. Names, help texts and label sets are the ones
operators' dashboards and alerts already use.
"""

from __future__ import annotations

import functools
import os
import platform
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Mapping, Optional

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.utils import floatToGoString

from exporter import __version__
from exporter.serving.metric_defs import MetricDef, metric

# Every reason a refresh can fail with; each series exists at 0 from start-up.
# wrong_chain: the endpoint serves another chain (chain.genesis_hash); endpoints_disagree: the
# cross-check found two endpoints naming different blocks at one height (chain.cross_check).
ERROR_REASONS = ("timeout", "connection", "rpc_error", "decode", "invalid", "internal", "wrong_chain", "endpoints_disagree")
REFRESH_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
# Stages run from milliseconds (render, changes) to minutes (a slow read).
STAGE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# The stages of one refresh, in pipeline order.
STAGES = ("read", "snapshot", "changes", "history", "render")
HISTORY_RESULTS = ("ok", "error")
# Set when an image is built (e.g. ``--build-arg REVISION=$(git rev-parse HEAD)``): the commit it was built from.
REVISION_ENV = "BITTENSOR_EXPORTER_REVISION"
_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1 or SHA-256 object names
_MAX_GIT_FILE_BYTES = 1 << 16


@dataclass(frozen=True)
class BuildInfo:
    """The labels of ``bittensor_exporter_build_info``."""

    version: str
    revision: str  # the git commit, or "unknown"
    python_version: str


@functools.lru_cache(maxsize=None)
def build_info() -> BuildInfo:
    """This process's build: read once (the environment, at most a few small files under .git)."""
    return BuildInfo(version=__version__, revision=revision(os.environ), python_version=platform.python_version())


def revision(environ: Mapping[str, str], source: Optional[Path] = None) -> str:
    """The commit the exporter runs from: ``BITTENSOR_EXPORTER_REVISION`` when set, else the
    HEAD of the git checkout the package is imported from (read from its files: no ``git``
    process), else "unknown". An installed package has no checkout beside it: "unknown"."""
    given = environ.get(REVISION_ENV, "").strip()
    if given:
        return given[:64] if given.isprintable() else "unknown"
    try:
        return _git_head(source or Path(__file__).resolve().parents[2]) or "unknown"
    except (OSError, ValueError):
        return "unknown"


def _git_head(checkout: Path) -> Optional[str]:
    git = checkout / ".git"
    if git.is_file():  # a worktree or submodule: "gitdir: <path>"
        pointer = _small_text(git)
        if not pointer.startswith("gitdir:"):
            return None
        git = (checkout / pointer[len("gitdir:"):].strip()).resolve()
        common = git / "commondir"
        common_dir = (git / _small_text(common).strip()).resolve() if common.is_file() else git
    elif git.is_dir():
        common_dir = git
    else:
        return None
    head = _small_text(git / "HEAD").strip()
    if _COMMIT.fullmatch(head):  # a detached HEAD
        return head
    if not head.startswith("ref: refs/"):
        return None
    ref = head[len("ref: "):].strip()
    if ".." in ref.split("/"):
        return None
    for directory in (git, common_dir):
        path = directory / ref
        if path.is_file():
            commit = _small_text(path).strip()
            return commit if _COMMIT.fullmatch(commit) else None
    packed = common_dir / "packed-refs"
    if packed.is_file():
        for line in _small_text(packed).splitlines():
            commit, _, name = line.partition(" ")
            if name.strip() == ref and _COMMIT.fullmatch(commit):
                return commit
    return None


def _small_text(path: Path) -> str:
    with open(path, "rb") as file:
        data = file.read(_MAX_GIT_FILE_BYTES + 1)
    if len(data) > _MAX_GIT_FILE_BYTES:
        raise ValueError(f"{path} is not a small git file")
    return data.decode("utf-8")


@dataclass(frozen=True)
class Histogram:
    """Counts per bucket (the last one is +Inf, not cumulative) and the sum of observations."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...] = ()
    total: float = 0.0

    def observe(self, value: float) -> "Histogram":
        counts = list(self.counts or (0,) * (len(self.bounds) + 1))
        counts[next((i for i, b in enumerate(self.bounds) if value <= b), len(self.bounds))] += 1
        return replace(self, counts=tuple(counts), total=self.total + value)

    def buckets(self) -> list[tuple[str, int]]:
        """Cumulative (le, count) pairs, as the exposition format wants them."""
        counts = self.counts or (0,) * (len(self.bounds) + 1)
        running, out = 0, []
        for bound, count in zip((*map(floatToGoString, self.bounds), "+Inf"), counts):
            running += count
            out.append((bound, running))
        return out


@dataclass(frozen=True)
class EndpointAttempt:
    """One try of one endpoint in a refresh's chain read; ``reason`` None is a success."""

    endpoint: str  # the endpoint's label: scheme://host:port, never the URL
    reason: Optional[str]
    seconds: float


@dataclass(frozen=True)
class HistoryResult:
    """What the history stage of one refresh did."""

    ok: bool
    events: int = 0
    database_bytes: Optional[int] = None
    at: Optional[float] = None  # unix time of the commit


@dataclass(frozen=True)
class RefreshOutcome:
    """Everything one refresh reports about itself, good or not."""

    finished_at: float  # unix time
    seconds: float
    error: Optional[str] = None  # a bounded reason (ERROR_REASONS), None on success
    stages: tuple[tuple[str, float], ...] = ()
    attempts: tuple[EndpointAttempt, ...] = ()
    history: Optional[HistoryResult] = None  # None: history disabled or not reached
    requests: int = 0  # JSON-RPC requests this refresh sent
    request_totals: Mapping[str, int] = field(default_factory=dict)  # since start, by method
    validators: int = 0
    edges: int = 0
    plain_bytes: int = 0
    gzip_bytes: int = 0


@dataclass(frozen=True)
class Status:
    """The exporter's health after the refreshes so far; advanced only by ``advance``."""

    endpoints: tuple[str, ...] = ()
    up: bool = False
    last_success: float = 0.0
    refresh_duration: Histogram = Histogram(REFRESH_BUCKETS)
    stage_duration: Mapping[str, Histogram] = field(default_factory=dict)
    errors: Mapping[str, int] = field(default_factory=lambda: dict.fromkeys(ERROR_REASONS, 0))
    refresh_requests: int = 0
    validators: int = 0
    edges: int = 0
    snapshot_bytes: Optional[tuple[int, int]] = None  # (identity, gzip) of the served snapshot
    history_writes: Mapping[str, int] = field(default_factory=lambda: dict.fromkeys(HISTORY_RESULTS, 0))
    history_last_success: float = 0.0
    history_bytes: int = 0
    endpoint_up: Mapping[str, bool] = field(default_factory=dict)
    endpoint_errors: Mapping[tuple[str, str], int] = field(default_factory=dict)
    endpoint_read_duration: Mapping[str, Histogram] = field(default_factory=dict)
    request_totals: Mapping[str, int] = field(default_factory=dict)
    build: BuildInfo = field(default_factory=build_info)

    @classmethod
    def initial(cls, endpoints: Iterable[str], build: Optional[BuildInfo] = None) -> "Status":
        """Before any refresh: every endpoint's series exist, errors at 0. ``build``: this
        process's (``build_info()``) unless given."""
        endpoints = tuple(endpoints)
        return cls(
            build=build or build_info(),
            endpoints=endpoints,
            endpoint_up=dict.fromkeys(endpoints, False),
            endpoint_errors={(e, r): 0 for e in endpoints for r in ERROR_REASONS},
        )


def _plus(counts: Mapping, key, by: int = 1) -> dict:
    new = dict(counts)
    new[key] = new.get(key, 0) + by
    return new


def advance(status: Status, outcome: RefreshOutcome) -> Status:
    """The status after one more refresh: a pure function of the last status and the outcome."""
    stages = dict(status.stage_duration)
    for stage, seconds in outcome.stages:
        stages[stage] = stages.get(stage, Histogram(STAGE_BUCKETS)).observe(seconds)
    endpoint_up = dict(status.endpoint_up)
    endpoint_errors = dict(status.endpoint_errors)
    endpoint_reads = dict(status.endpoint_read_duration)
    for a in outcome.attempts:
        endpoint_up[a.endpoint] = a.reason is None
        endpoint_reads[a.endpoint] = endpoint_reads.get(a.endpoint, Histogram(REFRESH_BUCKETS)).observe(a.seconds)
        if a.reason is not None:
            endpoint_errors = _plus(endpoint_errors, (a.endpoint, a.reason))
    new = replace(
        status,
        up=outcome.error is None,
        refresh_duration=status.refresh_duration.observe(outcome.seconds),
        stage_duration=stages,
        endpoint_up=endpoint_up,
        endpoint_errors=endpoint_errors,
        endpoint_read_duration=endpoint_reads,
        request_totals=dict(outcome.request_totals) or status.request_totals,
    )
    h = outcome.history
    if h is not None:
        new = replace(new, history_writes=_plus(new.history_writes, "ok" if h.ok else "error"))
        if h.ok:
            new = replace(new, history_last_success=h.at or outcome.finished_at,
                          history_bytes=h.database_bytes if h.database_bytes is not None else new.history_bytes)
    if outcome.error is not None:
        return replace(new, errors=_plus(new.errors, outcome.error))
    return replace(
        new,
        last_success=outcome.finished_at,
        refresh_requests=outcome.requests,
        validators=outcome.validators,
        edges=outcome.edges,
        snapshot_bytes=(outcome.plain_bytes, outcome.gzip_bytes),
    )


class _Families:
    """A collector over one Status, so prometheus_client renders it in its usual format."""

    def __init__(self, status: Status, withdrawn: bool):
        self._status = status
        self._withdrawn = withdrawn

    def collect(self):
        s = self._status
        yield _gauge("bittensor_exporter_up", int(s.up))
        yield _histogram("bittensor_exporter_refresh_duration_seconds", {(): s.refresh_duration})
        yield _histogram("bittensor_exporter_refresh_stage_duration_seconds",
                         {(stage,): s.stage_duration[stage] for stage in STAGES if stage in s.stage_duration})
        yield _gauge("bittensor_exporter_last_refresh_success_timestamp_seconds", s.last_success)
        yield _counter("bittensor_exporter_refresh_errors_total", {(r,): s.errors.get(r, 0) for r in ERROR_REASONS})
        yield _gauge("bittensor_exporter_refresh_rpc_requests", s.refresh_requests)
        # While the snapshot is withdrawn for staleness, no validator or edge series are served.
        yield _gauge("bittensor_exporter_validators", 0 if self._withdrawn else s.validators)
        yield _gauge("bittensor_exporter_child_edges", 0 if self._withdrawn else s.edges)
        sizes = {} if s.snapshot_bytes is None else {("identity",): s.snapshot_bytes[0], ("gzip",): s.snapshot_bytes[1]}
        yield _gauge_family("bittensor_exporter_snapshot_bytes", sizes)
        yield _counter("bittensor_exporter_history_writes_total",
                       {(r,): s.history_writes.get(r, 0) for r in HISTORY_RESULTS})
        yield _gauge("bittensor_exporter_history_last_write_success_timestamp_seconds", s.history_last_success)
        yield _gauge("bittensor_exporter_history_database_bytes", s.history_bytes)
        yield _gauge_family("bittensor_exporter_endpoint_up",
                            {(e,): int(s.endpoint_up.get(e, False)) for e in s.endpoints})
        yield _counter("bittensor_exporter_endpoint_errors_total",
                       {(e, r): s.endpoint_errors.get((e, r), 0) for e in s.endpoints for r in ERROR_REASONS})
        yield _histogram("bittensor_exporter_endpoint_read_duration_seconds",
                         {(e,): s.endpoint_read_duration[e] for e in s.endpoints if e in s.endpoint_read_duration})
        b = s.build
        yield _gauge_family("bittensor_exporter_build_info", {(b.version, b.revision, b.python_version): 1})
        yield _counter("bittensor_exporter_rpc_requests_total", {(m,): c for m, c in sorted(s.request_totals.items())})


# Each family's type, help text and label names come from its row in ``metric_defs``.
def _gauge(name: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, _row(name, "gauge").help_text, value=value)


def _gauge_family(name: str, values: Mapping[tuple, float]) -> GaugeMetricFamily:
    m = _row(name, "gauge")
    family = GaugeMetricFamily(name, m.help_text, labels=list(m.labels))
    for label_values, value in values.items():
        family.add_metric(list(label_values), value)
    return family


def _counter(name: str, values: Mapping[tuple, float]) -> CounterMetricFamily:
    m = _row(name, "counter")
    family = CounterMetricFamily(name, m.help_text, labels=list(m.labels))  # the family's name loses _total
    for label_values, value in values.items():
        family.add_metric(list(label_values), value)
    return family


def _histogram(name: str, values: Mapping[tuple, Histogram]):
    m = _row(name, "histogram")
    family = HistogramMetricFamily(name, m.help_text, labels=list(m.labels))
    for label_values, histogram in values.items():
        family.add_metric(list(label_values), histogram.buckets(), histogram.total)
    return family


def _row(name: str, kind: str) -> MetricDef:
    m = metric(name)
    assert m.type == kind, f"{name} is a {m.type} in metric_defs"
    return m


def render_status(status: Status, withdrawn: bool = False) -> bytes:
    """The status as exposition text; ``withdrawn``: as served while the snapshot is withheld."""
    return generate_latest(_Families(status, withdrawn))  # type: ignore[arg-type] - any object with collect()
