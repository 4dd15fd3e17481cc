"""Comparison servers for /metrics, each run in its own process.

(c) ``PrometheusClientServer``: the usual way to write an exporter with
``prometheus_client``: a custom collector turns the cached snapshot into
``MetricFamily`` objects on every scrape, served by the library's own HTTP
server (which gzips each response when asked).

(d) ``StaticServer``: the same exposition bytes from memory, with nothing
computed per request: the floor for this machine and Python's HTTP stack.
"""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily

from exporter.serving.exposition import DETAIL_FAMILIES, VALIDATOR_FAMILIES
from exporter.serving.metric_defs import metric
from exporter.snapshot.units import U64_MAX, to_units
from exporter.snapshot.model import Snapshot

VALIDATOR_LABELS = ["hotkey", "netuid"]


class SnapshotCollector:
    """Yields the exporter's snapshot families, built from the snapshot at collect time."""

    def __init__(self, snapshot: Snapshot):
        self.snapshot = snapshot

    def collect(self):
        s = self.snapshot
        validators = s.validators

        def gauge(name: str, _short_help: str, labels: list[str], samples) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, metric(name).help_text, labels=labels)  # the exporter's help text
            for label_values, value in samples:
                family.add_metric(label_values, value)
            return family

        for name, value_of in VALIDATOR_FAMILIES:
            yield gauge(name, "", VALIDATOR_LABELS, (([v.hotkey, str(v.netuid)], value_of(v)) for v in validators))
        yield gauge("bittensor_validator_permit", "1 if the uid holds a validator permit.", [*VALIDATOR_LABELS, "uid"],
                    (([v.hotkey, str(v.netuid), "" if v.uid is None else str(v.uid)], int(v.permit)) for v in validators))
        for name, present, value_of in DETAIL_FAMILIES:
            yield gauge(name, "", VALIDATOR_LABELS,
                        (([v.hotkey, str(v.netuid)], value_of(v)) for v in validators if present(v)))
        roots = {}
        for v in validators:
            if v.root_tao:
                roots.setdefault(v.hotkey, v.root_tao)
        yield gauge("bittensor_hotkey_root_stake_tao", "Own root stake of the hotkey.", ["hotkey"],
                    (([h], to_units(t)) for h, t in roots.items()))
        yield gauge("bittensor_childkey_inherited_alpha", "Alpha the child receives from this parent.",
                    ["parent_hotkey", "child_hotkey", "netuid"],
                    (([e.parent, e.child, str(e.netuid)], to_units(e.inherited_alpha)) for e in s.edges
                     if e.inherited_alpha is not None))
        if any(v.suspended is not None for v in validators):
            yield gauge("bittensor_validator_childkey_suspended", "1 if the runtime suspended the hotkey's childkeys.",
                        VALIDATOR_LABELS,
                        (([v.hotkey, str(v.netuid)], int(bool(v.suspended))) for v in validators if v.suspended is not None))
        yield gauge("bittensor_validator_expected_childkey_take_ratio", "Expected childkey take (0-1).", VALIDATOR_LABELS,
                    (([v.hotkey, str(v.netuid)], s.expected_takes[v.hotkey]) for v in validators if v.hotkey in s.expected_takes))
        yield gauge("bittensor_validator_info", "Validator metadata (value 1).", ["hotkey", "coldkey", "alias", "watched"],
                    (([i.hotkey, i.coldkey, i.alias, str(i.watched).lower()], 1) for i in s.identities))
        yield gauge("bittensor_childkey_proportion_ratio", "Share (0-1) of the parent's stake delegated to the child.",
                    ["parent_hotkey", "child_hotkey", "netuid"],
                    (([e.parent, e.child, str(e.netuid)], e.proportion / U64_MAX) for e in s.edges))
        yield gauge("bittensor_childkey_pending_children", "Children in a scheduled (pending) child set.",
                    ["parent_hotkey", "netuid"], (([p.parent, str(p.netuid)], len(p.children)) for p in s.pending))
        yield gauge("bittensor_childkey_pending_cooldown_block", "Block after which the pending child set is applied.",
                    ["parent_hotkey", "netuid"], (([p.parent, str(p.netuid)], p.cooldown_block) for p in s.pending))
        yield gauge("bittensor_childkey_pending_proportion_ratio", "Share (0-1) the pending child set would delegate.",
                    ["parent_hotkey", "child_hotkey", "netuid"],
                    (([p.parent, child, str(p.netuid)], q / U64_MAX) for p in s.pending for q, child in p.children))
        yield gauge("bittensor_subnet_max_validators", "MaxAllowedValidators.", ["netuid"],
                    (([str(n.netuid)], n.max_validators) for n in s.subnets))
        yield gauge("bittensor_subnet_validator_permits", "Uids holding a validator permit.", ["netuid"],
                    (([str(n.netuid)], n.permits) for n in s.subnets))
        yield gauge("bittensor_subnet_permit_cutoff_stake_weight_alpha", "Stake weight of the k-th strongest permit holder.",
                    ["netuid"], (([str(n.netuid)], to_units(n.permit_cutoff_stake_weight))
                                for n in s.subnets if n.permit_cutoff_stake_weight is not None))
        chain = s.chain
        for name, value in (
            ("bittensor_chain_block", chain.block),
            ("bittensor_chain_block_timestamp_seconds", chain.timestamp_seconds),
            ("bittensor_chain_runtime_spec_version", chain.spec_version),
            ("bittensor_chain_tao_weight_ratio", chain.tao_weight),
            ("bittensor_chain_stake_threshold_alpha", to_units(chain.stake_threshold)),
            ("bittensor_chain_min_childkey_take_ratio", chain.min_take),
            ("bittensor_chain_max_childkey_take_ratio", chain.max_take),
            ("bittensor_chain_pending_childkey_cooldown_blocks", chain.pending_cooldown),
        ):
            yield GaugeMetricFamily(name, metric(name).help_text, value=value)


class PrometheusClientServer:
    """(c): ``prometheus_client`` rendering the snapshot on every scrape."""

    def __init__(self, snapshot: Snapshot):
        registry = CollectorRegistry(auto_describe=False)
        registry.register(SnapshotCollector(snapshot))
        self._server, self._thread = start_http_server(0, addr="127.0.0.1", registry=registry)

    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class StaticServer:
    """(d): fixed bytes per encoding, sent by a threaded ``http.server`` like the exporter's."""

    def __init__(self, plain: bytes, gzipped: bytes):
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body leave in separate writes: without TCP_NODELAY the
            # body's last segment can wait for the client's delayed ACK (40 ms).
            disable_nagle_algorithm = True

            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                gzip = "gzip" in self.headers.get("Accept-Encoding", "")
                body = gzipped if gzip else plain
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                if gzip:
                    self.send_header("Content-Encoding", "gzip")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = Thread(target=self._server.serve_forever, name="static-http", daemon=True)
        self._thread.start()

    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
