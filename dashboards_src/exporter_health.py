"""Bittensor / Exporter health: the dashboard as code.

Is the bittensor validator exporter reading the chain: refresh success and staleness, durations,
JSON-RPC load, errors, scrapes and the history database.
"""

from __future__ import annotations

from dashboards_src.board import Board
from dashboards_src.panels import NAME, VALUE_AND_NAME, Column, Query, Style, graph_panel, stat_panel, table_panel


def build() -> Board:
    board = Board(
        'bittensor-exporter-health',
        'Bittensor / Exporter health',
        'Is the bittensor validator exporter reading the chain: refresh success and staleness, durations, JSON-RPC load, errors, scrapes and the history database.',
        variables=[
        ],
        links=[
        ],
    )
    board.row(
        'Status',
        stat_panel(
            'Last refresh',
            'bittensor_exporter_up: 1 if the last chain read succeeded (the last good snapshot is served either way).',
            Query('bittensor_exporter_up{instance=~"$instance"}', '{{instance}}'),
            style=Style(mappings={'0': ('FAILED', 'red'), '1': ('OK', 'green')}, steps=[(None, 'red'), (1, 'green')]),
        ),
        stat_panel(
            'Scrape',
            "Prometheus's `up` for the exporter target: 0 when the exporter does not answer at all.",
            Query('up{instance=~"$instance"}', '{{instance}}'),
            style=Style(mappings={'0': ('DOWN', 'red'), '1': ('UP', 'green')}, steps=[(None, 'red'), (1, 'green')]),
        ),
        stat_panel(
            'Staleness',
            'Seconds since the last successful refresh; /healthz fails past refresh.stale_after_seconds (default 3 intervals).',
            Query('time() - bittensor_exporter_last_refresh_success_timestamp_seconds{instance=~"$instance"}', '{{instance}}'),
            style=Style(unit='s', steps=[(None, 'green'), (120, 'orange'), (180, 'red')]),
        ),
        stat_panel(
            'Finalized block age',
            'Seconds between now and the timestamp of the block the snapshot was read at: grows when the endpoint lags.',
            Query('time() - bittensor_chain_block_timestamp_seconds{instance=~"$instance"}', '{{instance}}'),
            style=Style(unit='s', steps=[(None, 'green'), (300, 'orange'), (900, 'red')]),
        ),
        stat_panel(
            'Validators / edges',
            'Size of the snapshot each exporter serves (0 once it is withdrawn for staleness).',
            [
                Query('bittensor_exporter_validators{instance=~"$instance"}', 'validators {{instance}}'),
                Query('bittensor_exporter_child_edges{instance=~"$instance"}', 'edges {{instance}}'),
            ],
            style=Style(decimals=0),
            text=VALUE_AND_NAME,
        ),
        stat_panel(
            'Version',
            'Versions (and source revisions) of the exporters picked.',
            Query('max by (version, revision) (bittensor_exporter_build_info{instance=~"$instance"})', '{{version}} {{revision}}'),
            text=NAME,
        ),
    )
    board.row(
        'Refresh',
        graph_panel(
            'Staleness',
            'Seconds since the last successful refresh.',
            Query('time() - bittensor_exporter_last_refresh_success_timestamp_seconds{instance=~"$instance"}', '{{instance}}'),
            style=Style(unit='s'),
        ),
        graph_panel(
            'Refresh duration',
            'Quantiles of refresh wall time (chain read, snapshot, rendering) from the histogram, and the mean.',
            [
                Query('histogram_quantile(0.5, sum by (le, instance) (rate(bittensor_exporter_refresh_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])))', 'p50 {{instance}}'),
                Query('histogram_quantile(0.9, sum by (le, instance) (rate(bittensor_exporter_refresh_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])))', 'p90 {{instance}}'),
                Query('histogram_quantile(0.99, sum by (le, instance) (rate(bittensor_exporter_refresh_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])))', 'p99 {{instance}}'),
                Query('sum by (instance) (rate(bittensor_exporter_refresh_duration_seconds_sum{instance=~"$instance"}[$__rate_interval])) / sum by (instance) (rate(bittensor_exporter_refresh_duration_seconds_count{instance=~"$instance"}[$__rate_interval]))', 'mean {{instance}}'),
            ],
            style=Style(unit='s'),
        ),
        graph_panel(
            'JSON-RPC requests by method',
            'Requests sent to the chain endpoint per second, counted on the wire.',
            Query('sum by (instance, method) (rate(bittensor_exporter_rpc_requests_total{instance=~"$instance"}[$__rate_interval]))', '{{method}} {{instance}}'),
            width=8,
            height=8,
            style=Style(unit='reqps'),
            stacked=True,
        ),
        graph_panel(
            'Requests per refresh',
            'JSON-RPC requests the last refresh sent (56 at mainnet scale).',
            Query('bittensor_exporter_refresh_rpc_requests{instance=~"$instance"}', '{{instance}}'),
            width=8,
            height=8,
            style=Style(unit='short', decimals=0),
        ),
        graph_panel(
            'Refresh time by stage',
            'Mean wall time of each stage of a refresh (read, snapshot, changes, history, render): where a slow refresh spends its time.',
            Query('sum by (instance, stage) (rate(bittensor_exporter_refresh_stage_duration_seconds_sum{instance=~"$instance"}[$__rate_interval])) / sum by (instance, stage) (rate(bittensor_exporter_refresh_stage_duration_seconds_count{instance=~"$instance"}[$__rate_interval]))', '{{stage}} {{instance}}'),
            width=8,
            height=8,
            style=Style(unit='s'),
        ),
        graph_panel(
            'Refresh errors by reason',
            'Failed refreshes per reason: timeout, connection, rpc_error, decode, invalid, internal.',
            Query('sum by (instance, reason) (increase(bittensor_exporter_refresh_errors_total{instance=~"$instance"}[$__rate_interval]))', '{{reason}} {{instance}}'),
            style=Style(unit='short', decimals=0),
            bars=True,
            stacked=True,
            minimum=0,
        ),
        table_panel(
            'Refresh errors in the time range',
            'Failed refreshes per reason over the selected time range.',
            ['instance', 'reason'],
            [
                Column('errors', 'sum by (instance, reason) (increase(bittensor_exporter_refresh_errors_total{instance=~"$instance"}[$__range]))'),
            ],
            width=12,
            height=8,
            style=Style(decimals=0),
            sort_by=('errors', True),
            renames={"instance": "exporter"},
        ),
    )
    board.row(
        'Chain endpoints',
        stat_panel(
            'Endpoints',
            'bittensor_exporter_endpoint_up: 1 if the last chain read through the endpoint succeeded. Endpoints are tried in the configured order; later ones are fallbacks.',
            Query('bittensor_exporter_endpoint_up{instance=~"$instance"}', '{{endpoint}} {{instance}}'),
            width=8,
            height=8,
            style=Style(mappings={'0': ('FAILED', 'red'), '1': ('OK', 'green')}, steps=[(None, 'red'), (1, 'green')]),
            text=VALUE_AND_NAME,
        ),
        graph_panel(
            'Chain read duration by endpoint',
            "90th percentile of one refresh's chain read through each endpoint, failed reads included.",
            Query('histogram_quantile(0.9, sum by (le, instance, endpoint) (rate(bittensor_exporter_endpoint_read_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])))', 'p90 {{endpoint}} {{instance}}'),
            width=8,
            height=8,
            style=Style(unit='s'),
        ),
        graph_panel(
            'Endpoint errors by reason',
            'Failed chain reads per endpoint and reason.',
            Query('sum by (instance, endpoint, reason) (increase(bittensor_exporter_endpoint_errors_total{instance=~"$instance"}[$__rate_interval]))', '{{endpoint}} {{reason}} {{instance}}'),
            width=8,
            height=8,
            style=Style(unit='short', decimals=0),
            bars=True,
            stacked=True,
            minimum=0,
        ),
    )
    board.row(
        'Snapshot and scrape',
        graph_panel(
            'Snapshot size',
            'Validators and child edges in the served snapshot.',
            [
                Query('bittensor_exporter_validators{instance=~"$instance"}', 'validators {{instance}}'),
                Query('bittensor_exporter_child_edges{instance=~"$instance"}', 'edges {{instance}}'),
            ],
            width=8,
            height=8,
            style=Style(unit='short', decimals=0),
        ),
        graph_panel(
            'Exposition size',
            'Bytes of the rendered snapshot, plain and gzipped (what a scrape transfers).',
            Query('bittensor_exporter_snapshot_bytes{instance=~"$instance"}', '{{encoding}} {{instance}}'),
            width=8,
            height=8,
            style=Style(unit='bytes'),
        ),
        graph_panel(
            'Scrape duration',
            'How long Prometheus takes to scrape the exporter; keep it well under the scrape timeout.',
            Query('scrape_duration_seconds{instance=~"$instance"}', '{{instance}}'),
            width=8,
            height=8,
            style=Style(unit='s'),
        ),
        graph_panel(
            'Memory',
            'Resident memory of the exporter process.',
            Query('process_resident_memory_bytes{instance=~"$instance"}', '{{instance}}'),
            style=Style(unit='bytes'),
        ),
        graph_panel(
            'CPU',
            'CPU used by the exporter process, in cores.',
            Query('rate(process_cpu_seconds_total{instance=~"$instance"}[$__rate_interval])', '{{instance}}'),
            style=Style(unit='short'),
        ),
    )
    board.row(
        'History database',
        stat_panel(
            'History writes failing',
            'Failed writes to the history database in the selected time range.',
            Query('sum by (instance) (increase(bittensor_exporter_history_writes_total{instance=~"$instance", result="error"}[$__range]))', '{{instance}}'),
            width=6,
            height=4,
            style=Style(decimals=0, steps=[(None, 'green'), (1, 'red')]),
        ),
        stat_panel(
            'Since last history write',
            'Seconds since the history database last committed a refresh.',
            Query('time() - bittensor_exporter_history_last_write_success_timestamp_seconds{instance=~"$instance"}', '{{instance}}'),
            width=6,
            height=4,
            style=Style(unit='s', steps=[(None, 'green'), (180, 'orange'), (600, 'red')]),
        ),
        stat_panel(
            'History database size',
            'Size of the SQLite history database file.',
            Query('bittensor_exporter_history_database_bytes{instance=~"$instance"}', '{{instance}}'),
            width=6,
            height=4,
            style=Style(unit='bytes'),
        ),
        graph_panel(
            'History writes',
            'Writes to the history database per result (one per refresh).',
            Query('sum by (instance, result) (increase(bittensor_exporter_history_writes_total{instance=~"$instance"}[$__rate_interval]))', '{{result}} {{instance}}'),
            width=6,
            height=4,
            style=Style(unit='short', decimals=0),
            bars=True,
            stacked=True,
            minimum=0,
        ),
        graph_panel(
            'History database growth',
            'Size of the history database over time.',
            Query('bittensor_exporter_history_database_bytes{instance=~"$instance"}', '{{instance}}'),
            width=24,
            height=7,
            style=Style(unit='bytes'),
        ),
    )
    return board
