"""Counts of recorded change events, and when watched validators last changed, for /metrics.

Per validator only for the watched hotkeys (the ones alerts are about), and only
the (hotkey, netuid, kind) that changed: pre-creating every kind for every
validator at 0 cost 89,000 series at mainnet scale. The counters leave out the
stake moves (frequent, and the stake series show their trend); the last change
of each kind includes them, so a dashboard shows when the own stake last halved.
Every event also counts in its subnet's total per kind. Counts only grow.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Optional

from exporter.serving.metric_defs import metric
from exporter.snapshot.causes import CAUSES
from exporter.snapshot.changes import CHANGE_KINDS, ChangeEvent

# Per watched validator: every kind but the stake moves (frequent, and the stake
# series already show them; they still count per subnet and stay in history).
SIGNAL_KINDS = frozenset(CHANGE_KINDS) - {"own_stake_moved", "stake_weight_moved"}

NAME = "bittensor_childkey_changes_total"
SUBNET_NAME = "bittensor_subnet_changes_total"


def _header(name: str) -> str:
    """HELP and TYPE of ``name``, from its row in ``metric_defs``."""
    m = metric(name)
    return f"# HELP {name} {m.help_text}\n# TYPE {name} {m.type}\n"


class ChangeCounters:
    """Owned by the refresh thread; rendered into the payload it publishes."""

    def __init__(self, watched: frozenset[str] = frozenset()) -> None:
        self._watched = watched
        self._counts: dict[tuple[str, int, str], int] = {}
        self._subnets: dict[tuple[int, str], int] = {}

    def add(self, events: Iterable[ChangeEvent]) -> None:
        for e in events:
            self._subnets[(e.netuid, e.kind)] = self._subnets.get((e.netuid, e.kind), 0) + 1
            if e.hotkey in self._watched and e.kind in SIGNAL_KINDS:
                key = (e.hotkey, e.netuid, e.kind)
                self._counts[key] = self._counts.get(key, 0) + 1

    def render(self, subnets: bool = True) -> bytes:
        """``subnets``: also the per-subnet totals (network mode; watched mode leaves out the rest of the network)."""
        lines = [_header(NAME)]
        lines.extend(
            f'{NAME}{{hotkey="{h}",netuid="{n}",kind="{k}"}} {c}\n'
            for (h, n, k), c in sorted(self._counts.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2]))
        )
        if subnets:
            lines.append(_header(SUBNET_NAME))
            lines.extend(f'{SUBNET_NAME}{{netuid="{n}",kind="{k}"}} {c}\n' for (n, k), c in sorted(self._subnets.items()))
        return "".join(lines).encode()


LAST_CHANGE_TIME = "bittensor_validator_last_change_timestamp_seconds"
LAST_CHANGE_BLOCK = "bittensor_validator_last_change_block"
LAST_CHANGE_CAUSE = "bittensor_validator_last_change_cause_info"
LAST_CHANGE_RECORDED = "bittensor_validator_last_change_recorded_timestamp_seconds"


def render_last_changes(last_changes: Mapping[tuple[str, int, str], tuple[int, float, Optional[str], float]]) -> bytes:
    """When each watched validator last changed, by kind (stake moves included), from the history database.

    Loaded from the file at start and kept by the refresh thread, so an alert
    on recency survives restarts of the exporter and of Prometheus. The alerts
    read when the change was recorded, not when it happened: a change found by a
    catch-up after an outage happened hours ago but is news now, and fires once.
    """
    rows = sorted(last_changes.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2]))
    parts = [
        _header(LAST_CHANGE_TIME),
        *(f'{LAST_CHANGE_TIME}{{hotkey="{h}",netuid="{n}",kind="{k}"}} {float(t)!r}\n' for (h, n, k), (_, t, _, _) in rows),
        _header(LAST_CHANGE_RECORDED),
        *(f'{LAST_CHANGE_RECORDED}{{hotkey="{h}",netuid="{n}",kind="{k}"}} {float(r)!r}\n' for (h, n, k), (_, _, _, r) in rows),
        _header(LAST_CHANGE_BLOCK),
        *(f'{LAST_CHANGE_BLOCK}{{hotkey="{h}",netuid="{n}",kind="{k}"}} {int(b)}\n' for (h, n, k), (b, _, _, _) in rows),
        _header(LAST_CHANGE_CAUSE),
        # Only the causes the exporter writes: the file is read back, and a label value must stay bounded.
        *(f'{LAST_CHANGE_CAUSE}{{hotkey="{h}",netuid="{n}",kind="{k}",cause="{cause}"}} 1\n'
          for (h, n, k), (_, _, cause, _) in rows if cause in CAUSES),
    ]
    return "".join(parts).encode()
