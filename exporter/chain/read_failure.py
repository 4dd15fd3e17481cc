"""What a failed chain read is: its endpoint tries, a bounded reason label and a bounded message."""

from __future__ import annotations

import asyncio
import concurrent.futures
from dataclasses import dataclass
from typing import Optional

from bittensor._transport.errors import MaxRetriesExceeded, RpcPolicyRejection, SubstrateRequestException

from exporter.chain.trust import EndpointsDisagree, WrongChain
from exporter.snapshot.read_rules import InvalidRead


@dataclass(frozen=True)
class Attempt:
    """One try of one endpoint; ``reason`` None is a success."""

    endpoint: str  # the endpoint's label (scheme://host:port), safe for metrics and logs
    reason: Optional[str]
    seconds: float


class ReadError(Exception):
    """A refresh's chain read failed; ``reason`` is a bounded label for metrics."""

    def __init__(self, reason: str, message: str, attempts: tuple[Attempt, ...] = ()):
        self.reason = reason
        self.attempts = attempts
        super().__init__(message)


def classify(error: BaseException) -> str:
    """A bounded ``reason`` label for a failed read."""
    if isinstance(error, (WrongChain, EndpointsDisagree)):
        return error.reason
    if isinstance(error, (TimeoutError, asyncio.TimeoutError, concurrent.futures.TimeoutError)):
        return "timeout"
    # MaxRetriesExceeded: every endpoint refused or dropped the connection;
    # a policy rejection (HTTP 429/403, close 1008) is the endpoint shutting us out.
    if isinstance(error, (ConnectionError, OSError, MaxRetriesExceeded, RpcPolicyRejection)):
        return "connection"
    if "ConnectionClosed" in type(error).__name__:
        return "connection"
    if isinstance(error, InvalidRead):  # answers the chain could not have produced (one too large for the SDK, too)
        return "invalid"
    if isinstance(error, SubstrateRequestException):
        return "rpc_error"
    if isinstance(error, (ValueError, TypeError, KeyError, IndexError, OverflowError)):
        return "decode"
    return "internal"


def describe_error(error: BaseException) -> str:
    """``error`` as one message of at most 300 characters."""
    text = str(error).strip() or type(error).__name__
    return text if len(text) <= 300 else text[:300] + "..."
