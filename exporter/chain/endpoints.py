"""Choose which chain endpoint a refresh uses: configured order, health, backoff.

Every refresh may try every endpoint. Those that are due come first, in the
order configured; one that failed is put behind them until its backoff
expires (exponential, capped, with jitter so many exporters do not retry a
recovering public endpoint in lockstep), and those still backing off come
last, the one whose backoff ends first before the others. Backoff is a
preference, never an exclusion: when the endpoint in use dies, a healthy one
that is still backing off from an old failure is tried in the same refresh.
As soon as a preferred endpoint is due again, it is tried first again.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable, Optional
from urllib.parse import urlsplit

BACKOFF_BASE_SECONDS = 5.0
BACKOFF_CAP_SECONDS = 300.0


def endpoint_label(url: str) -> str:
    """scheme://host:port of an endpoint: a metric label or log field that can't leak
    an API key embedded in the path, query or userinfo."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "unknown"
        host = f"[{host}]" if ":" in host else host
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}"
    except ValueError:
        return "invalid-endpoint"


@dataclass
class Endpoint:
    url: str
    label: str
    failures: int = 0  # consecutive
    retry_at: float = 0.0  # monotonic time before which it is skipped

    @property
    def healthy(self) -> bool:
        return self.failures == 0


class EndpointPool:
    def __init__(
        self,
        urls: tuple[str, ...],
        *,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        base: float = BACKOFF_BASE_SECONDS,
        cap: float = BACKOFF_CAP_SECONDS,
    ):
        labels = [endpoint_label(u) for u in urls]
        # Two endpoints on one host differ only in what the label hides: number them.
        labels = [lab if labels.count(lab) == 1 else f"{lab}#{i + 1}" for i, lab in enumerate(labels)]
        self.endpoints = [Endpoint(url, label) for url, label in zip(urls, labels)]
        self._clock = clock
        self._jitter = jitter
        self._base = base
        self._cap = cap

    def order(self) -> list[Endpoint]:
        """Every endpoint, in the order to try them this refresh: those due in
        configured order, then those backing off by when their backoff ends
        (ties in configured order)."""
        now = self._clock()
        due = [e for e in self.endpoints if e.retry_at <= now]
        waiting = sorted((e for e in self.endpoints if e.retry_at > now), key=lambda e: e.retry_at)
        return due + waiting

    def succeeded(self, endpoint: Endpoint) -> None:
        endpoint.failures = 0
        endpoint.retry_at = 0.0

    def failed(self, endpoint: Endpoint) -> float:
        """Record a failure; returns the backoff (seconds) before it is tried again."""
        endpoint.failures += 1
        delay = min(self._cap, self._base * 2 ** (endpoint.failures - 1))
        delay *= 0.5 + 0.5 * self._jitter()  # "equal jitter": between half and all of it
        endpoint.retry_at = self._clock() + delay
        return delay

    def find(self, url: str) -> Optional[Endpoint]:
        return next((e for e in self.endpoints if e.url == url), None)
