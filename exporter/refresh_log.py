"""The refresh's log lines that judge or remember: a failed or refused read, and what the chain holds as it comes and goes."""

from __future__ import annotations

import time
from typing import Optional

import structlog

from exporter.chain.read_failure import Attempt, ReadError
from exporter.snapshot.model import Snapshot
from exporter.snapshot.read_rules import InvalidRead

# The refresh's own logger: these lines keep its name (log filters and Sentry fingerprints use it).
log = structlog.get_logger("exporter.refresh")


class ChainNotices:
    """What the last good refresh found missing or anomalous; a line only when that changes, not every refresh."""

    def __init__(self) -> None:
        self._watched_missing: Optional[set[str]] = None  # None until the first good refresh
        self._anomalies: dict[tuple[str, Optional[int]], int] = {}  # (rule, netuid) -> entries, of the last good refresh

    def check_watched(self, snapshot: Snapshot) -> None:
        """One warning when a watched hotkey is not on the chain (at start, or when it leaves), one line when it is back."""
        missing = {k.hotkey: k for k in snapshot.watched if not k.found}
        before = self._watched_missing
        for hotkey, key in missing.items():
            if before is None or hotkey not in before:
                log.warning(
                    "watched hotkey not found on the chain",
                    hotkey=hotkey, alias=key.alias, block=snapshot.chain.block,
                    hint="it holds no uid on any subnet and has no parents or children: check scope.watch for a typo, or whether it was deregistered",
                )
        for hotkey in (before or set()) - missing.keys():
            log.info("watched hotkey found on the chain", hotkey=hotkey, block=snapshot.chain.block)
        self._watched_missing = set(missing)

    def log_anomalies(self, snapshot: Snapshot) -> None:
        """One line when a (rule, netuid) of ``snapshot.anomalies`` appears, one when it clears: not every refresh."""
        now = {(a.rule, a.netuid): a.count for a in snapshot.anomalies}
        before = self._anomalies
        for (rule, netuid), count in now.items():
            if (rule, netuid) not in before:
                log.warning(
                    "chain state the write paths would not make", rule=rule, netuid=netuid, entries=count,
                    block=snapshot.chain.block,
                    hint="published as the chain computes it; see bittensor_chain_anomalous_entries and docs/chain-states.md",
                )
        for rule, netuid in before.keys() - now.keys():
            log.info("chain state cleared", rule=rule, netuid=netuid, block=snapshot.chain.block)
        self._anomalies = now


# What to check when no refresh has read the chain yet and the endpoint cannot be reached.
UNREACHABLE_HINT = ("check chain.endpoints (or BITTENSOR_EXPORTER_ENDPOINTS) and that this machine reaches it; "
                    "make demo runs against a simulated chain instead")


def read_failed(failure: ReadError, attempts: tuple[Attempt, ...], started: float, first: bool = False) -> str:
    """Log a failed read in one line; its reason (``invalid`` when the chain could not have said it).
    ``first``: no refresh has succeeded yet, so an unreachable endpoint gets a hint."""
    invalid = invalid_cause(failure)
    if invalid is not None:
        log_invalid(invalid, attempts, started)
        return "invalid"
    hint = {"hint": UNREACHABLE_HINT} if first and failure.reason in ("connection", "timeout") else {}
    log.warning("refresh failed", reason=failure.reason, error=str(failure), duration_seconds=elapsed(started), **hint)
    return failure.reason


def invalid_cause(failure: ReadError) -> Optional[InvalidRead]:
    """The ``InvalidRead`` behind a failed read, if that is what failed it."""
    cause: Optional[BaseException] = failure.__cause__
    while cause is not None and not isinstance(cause, InvalidRead):
        cause = cause.__cause__
    return cause


def log_invalid(failure: InvalidRead, attempts: tuple[Attempt, ...], started: float) -> None:
    """The one line a refused read logs: the rule it broke, where, and which endpoint said it."""
    log.warning(
        "refresh held back, needs confirmation" if failure.held else "refresh failed",
        reason="invalid",
        rule=failure.rule,
        detail=failure.detail,
        held_back=failure.held,
        endpoint=attempts[-1].endpoint if attempts else None,
        duration_seconds=elapsed(started),
    )


def elapsed(started: float) -> float:
    """Seconds since ``started`` (``time.monotonic()``), to the millisecond."""
    return round(time.monotonic() - started, 3)
