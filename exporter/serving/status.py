"""The exporter's own health metrics, kept in a registry the entry point builds."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily
from prometheus_client.process_collector import ProcessCollector

from exporter import __version__
from exporter.chain.wire import RequestCounter

# Every reason a refresh can fail with; each series exists at 0 from start-up.
ERROR_REASONS = ("timeout", "connection", "rpc_error", "decode", "internal")
REFRESH_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)


class _RequestCollector:
    """Exports the wire-level request counts as a counter family, read at scrape time."""

    def __init__(self, counter: RequestCounter):
        self._counter = counter

    def collect(self):
        family = CounterMetricFamily(
            "bittensor_exporter_rpc_requests",
            "JSON-RPC requests sent to the chain endpoint, by method.",
            labels=["method"],
        )
        for method, count in sorted(self._counter.totals().items()):
            family.add_metric([method], count)
        yield family


class SelfMetrics:
    def __init__(self, registry: CollectorRegistry, counter: RequestCounter):
        # `_created` series double the self-metrics and no dashboard or alert uses them.
        disable_created_metrics()
        self.registry = registry
        self.up = Gauge(
            "bittensor_exporter_up",
            "1 if the last refresh read the chain successfully, else 0 (the last good snapshot is still served).",
            registry=registry,
        )
        self.refresh_duration = Histogram(
            "bittensor_exporter_refresh_duration_seconds",
            "Wall time of one refresh: chain read, snapshot and rendering.",
            buckets=REFRESH_BUCKETS,
            registry=registry,
        )
        self.last_success = Gauge(
            "bittensor_exporter_last_refresh_success_timestamp_seconds",
            "Unix time of the last successful refresh.",
            registry=registry,
        )
        self.errors = Counter(
            "bittensor_exporter_refresh_errors",
            "Failed refreshes, by reason.",
            ["reason"],
            registry=registry,
        )
        for reason in ERROR_REASONS:
            self.errors.labels(reason)
        self.refresh_requests = Gauge(
            "bittensor_exporter_refresh_rpc_requests",
            "JSON-RPC requests the last refresh sent.",
            registry=registry,
        )
        self.validators = Gauge(
            "bittensor_exporter_validators",
            "Validator (hotkey, netuid) pairs in scope in the served snapshot.",
            registry=registry,
        )
        self.edges = Gauge(
            "bittensor_exporter_child_edges",
            "Parent/child edges exported in the served snapshot.",
            registry=registry,
        )
        self.snapshot_bytes = Gauge(
            "bittensor_exporter_snapshot_bytes",
            "Size of the rendered snapshot exposition, by encoding.",
            ["encoding"],
            registry=registry,
        )
        self.history_writes = Counter(
            "bittensor_exporter_history_writes",
            "Refreshes written to the history database, by result (ok, error).",
            ["result"],
            registry=registry,
        )
        for result in ("ok", "error"):
            self.history_writes.labels(result)
        self.history_last_success = Gauge(
            "bittensor_exporter_history_last_write_success_timestamp_seconds",
            "Unix time of the last successful history write.",
            registry=registry,
        )
        self.history_bytes = Gauge(
            "bittensor_exporter_history_database_bytes",
            "Size of the history database file and its write-ahead log.",
            registry=registry,
        )
        self.endpoint_up = Gauge(
            "bittensor_exporter_endpoint_up",
            "1 if the last chain read through this endpoint succeeded, else 0 (endpoint label: scheme://host:port).",
            ["endpoint"],
            registry=registry,
        )
        self.endpoint_errors = Counter(
            "bittensor_exporter_endpoint_errors",
            "Failed chain reads through this endpoint, by reason.",
            ["endpoint", "reason"],
            registry=registry,
        )
        self.endpoint_read_duration = Histogram(
            "bittensor_exporter_endpoint_read_duration_seconds",
            "Wall time of one refresh's chain read through this endpoint, failed or not.",
            ["endpoint"],
            buckets=REFRESH_BUCKETS,
            registry=registry,
        )
        build = Gauge(
            "bittensor_exporter_build_info",
            "Exporter version (value 1).",
            ["version"],
            registry=registry,
        )
        build.labels(__version__).set(1)
        registry.register(_RequestCollector(counter))
        ProcessCollector(registry=registry)

    def add_endpoints(self, labels) -> None:
        """Create every endpoint's series at start-up, errors at 0."""
        for label in labels:
            self.endpoint_up.labels(label)
            for reason in ERROR_REASONS:
                self.endpoint_errors.labels(label, reason)

    def observe_endpoint(self, endpoint, reason, seconds: float) -> None:
        """ChainSession's report of one read attempt (reason None: success)."""
        self.endpoint_up.labels(endpoint.label).set(0 if reason else 1)
        self.endpoint_read_duration.labels(endpoint.label).observe(seconds)
        if reason:
            self.endpoint_errors.labels(endpoint.label, reason).inc()
