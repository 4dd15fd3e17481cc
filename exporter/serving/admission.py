"""Which connections the HTTP server takes: at most so many at once, and so many from one client.

One host holding 1,100 connections (reopening each one refused) made 59 of 60
scrapes fail with 503; the total cap alone protects the process, not the
scrapes. A client (``client_key``: an IPv4 address, an IPv6 /64) holding its
``per_client`` connections is refused more, so the rest stay for Prometheus.
Used from the server's event-loop thread only.
"""

from __future__ import annotations

import ipaddress
from typing import Optional

TOTAL = "total"  # refused: the server holds its most connections
CLIENT = "client"  # refused: this client holds its most
FD_RESERVE = 128  # file descriptors left to the rest of the process (chain connections, SQLite, logs)


class Admission:
    """Open connections, in all and by client; ``admit`` counts one in, ``release`` out."""

    def __init__(self, total: int, per_client: int):
        self.total, self.per_client = total, per_client
        self.open = 0
        self._held: dict[str, int] = {}  # only clients holding a connection: bounded by ``total``

    def admit(self, client: str) -> Optional[str]:
        """None (and the connection counted) when it may open, else why not (TOTAL or CLIENT)."""
        held = self._held.get(client, 0)
        if held >= self.per_client:
            return CLIENT
        if self.open >= self.total:
            return TOTAL
        self.open += 1
        self._held[client] = held + 1
        return None

    def release(self, client: str) -> None:
        self.open -= 1
        held = self._held.pop(client) - 1
        if held:
            self._held[client] = held

    def held(self, client: str) -> int:
        return self._held.get(client, 0)


def client_key(peer) -> str:
    """Whose connection it is: the IPv4 address, or the /64 of an IPv6 one (a single host is
    commonly given a whole /64); an IPv4 client of a dual-stack socket by its IPv4 address."""
    address = peer[0] if isinstance(peer, tuple) and peer else str(peer)
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def descriptor_budget(unlimited: int) -> int:
    """Connections the process's file-descriptor limit allows, the rest of the exporter served first;
    ``unlimited`` where the process has no such limit (or is not on Unix)."""
    try:
        import resource
    except ImportError:  # not on Unix
        return unlimited
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return unlimited
    return max(16, soft - FD_RESERVE)
