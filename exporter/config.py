"""What a configuration is: the immutable settings the exporter runs from, their defaults and the collector table.

``exporter.config_load`` turns a config file into one of these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

DEFAULT_ENDPOINT = "wss://entrypoint-finney.opentensor.ai:443"
# finney's block 0 (chain_getBlockHash(0)): the chain read unless chain.genesis_hash names another.
FINNEY_GENESIS_HASH = "0x2f0555cc76fc2840a25a6ea3b9637146806f1f44b090c175ffde2a7e5ab36c03"
DEFAULT_LISTEN_ADDRESS = ":9744"



# Metric families that can be switched off (``collectors:`` in the file,
# ``--collector.NAME`` / ``--no-collector.NAME`` on the command line). The
# exporter's own metrics (bittensor_exporter_*, process_*) cannot.
COLLECTORS = {
    "validator": "per-validator stakes, stake weight, take, permit and uid (bittensor_validator_*)",
    "stake_detail": "stake given to children and received from parents, inherited and own root stake",
    "relationships": "childkey edges and pending child sets (bittensor_childkey_*)",
    "subnet": "per-subnet permit context: k, permits, cutoff, strongest contender (bittensor_subnet_*)",
    "chain": "chain constants: block, TaoWeight, StakeThreshold, take bounds (bittensor_chain_*)",
    "changes": "change counters and last-change times from the history (needs history)",
    "watched": "whether each watched hotkey is found on the chain (bittensor_watched_hotkey_*)",
    "activity": "weight-setting liveness (last weight set, inactive flag, cutoff): watched hotkeys and validators falling behind",
    "activity_all": "the liveness series for every validator in scope (off by default: ~8,400 series at mainnet scale)",
    "earnings": "vtrust, dividend and stake share, emission, dividends, delegate take, childkey earnings: watched hotkeys",
    "earnings_all": "the earnings families for every validator in scope (off by default: ~58,000 series at mainnet scale)",
}
# Collectors off unless switched on (the default network mode stays within its series budget).
OFF_BY_DEFAULT = frozenset({"activity_all", "earnings_all"})
SCOPE_MODES = ("network", "watched")
# interval: refresh every interval_seconds; finalized: refresh on every new finalized block
# (asking the node for its finalized head every poll_seconds), and at least every interval_seconds.
REFRESH_MODES = ("interval", "finalized")


@dataclass(frozen=True)
class WatchedHotkey:
    hotkey: str
    alias: str
    expected_take: Optional[float] = None  # ratio 0-1, None when not checked


@dataclass(frozen=True)
class ChainConfig:
    endpoints: tuple[str, ...] = (DEFAULT_ENDPOINT,)
    timeout_seconds: float = 30.0
    max_in_flight: int = 32
    # Memory bounds on what an endpoint sends (docs/bounds.md): the keys and values one
    # read's map scans may hold (~200x a mainnet read's 1.3 MB), and the largest single
    # answer (a node sends at most 15 MiB: substrate's --rpc-max-response-size).
    max_scan_bytes: int = 256 * 2**20
    max_response_bytes: int = 15 * 2**20
    # The chain's identity: an endpoint whose block 0 has another hash serves another chain and is refused.
    genesis_hash: str = FINNEY_GENESIS_HASH
    # With two endpoints or more: each refresh, a second endpoint must name the same finalized block
    # at the height both have reached, or nothing is published (reason endpoints_disagree).
    cross_check: bool = False


@dataclass(frozen=True)
class ScopeConfig:
    min_stake_weight: float = 1000.0  # alpha units
    netuids: tuple[int, ...] = ()  # empty: every subnet
    watch: tuple[WatchedHotkey, ...] = ()
    # network: every validator in scope; watched: only the watched hotkeys, the
    # edges and pending sets that touch them, and their subnets' context.
    mode: str = "network"

    def includes_netuid(self, netuid: int) -> bool:
        return not self.netuids or netuid in self.netuids

    @property
    def watched_hotkeys(self) -> frozenset[str]:
        return frozenset(w.hotkey for w in self.watch)


@dataclass(frozen=True)
class HistoryConfig:
    path: str = "history.db"
    api_enabled: bool = True
    stake_change_ratio: float = 0.05  # a stake or stake-weight move beyond this is an event
    samples_every_refresh_hours: float = 24
    samples_scope: str = "watched"  # watched | all
    samples_hourly_days: float = 90
    # Blocks of events read back after a restart or outage to record each change at its block
    # (a pruning node keeps about 256; an archive node all). Older changes become one net change
    # flagged as a gap. Each block read costs bytes, not requests (state_queryStorage over a range).
    catch_up_blocks: int = 256
    archive_endpoint: Optional[str] = None  # for `history backfill`; never used by the live exporter


@dataclass(frozen=True)
class Config:
    chain: ChainConfig = field(default_factory=ChainConfig)
    interval_seconds: float = 60.0
    refresh_timeout_seconds: float = 120.0
    refresh_mode: str = "interval"  # one of REFRESH_MODES
    poll_seconds: float = 2.0  # finalized mode: how often to ask for the finalized head (blocks are 12 s)
    stale_after_seconds: Optional[float] = None  # None: three intervals
    max_staleness_seconds: Optional[float] = None  # None: fifteen intervals
    scope: ScopeConfig = field(default_factory=ScopeConfig)
    history: HistoryConfig = field(default_factory=HistoryConfig)
    listen_address: str = DEFAULT_LISTEN_ADDRESS
    # Connections one client (IPv4 address, IPv6 /64) may hold at once: docs/bounds.md.
    max_connections_per_client: int = 64
    log_level: str = "info"
    log_format: str = "auto"
    collectors: frozenset = frozenset(COLLECTORS) - OFF_BY_DEFAULT  # enabled metric families

    @property
    def staleness_limit_seconds(self) -> float:
        if self.stale_after_seconds is not None:
            return self.stale_after_seconds
        return 3 * self.interval_seconds

    @property
    def withdraw_after_seconds(self) -> float:
        """Age of the last good snapshot beyond which its per-validator series are withdrawn."""
        if self.max_staleness_seconds is not None:
            return self.max_staleness_seconds
        return 15 * self.interval_seconds
