"""A bounded /metrics load: N concurrent scrapers over loopback, latency per response.

Each scraper keeps its connection open between scrapes, as Prometheus does,
and reconnects only when the server closes it (``prometheus_client``'s
server closes after every response, so there the connect is part of each
scrape). The first connection is opened before the clock starts. The client
does as little as it can per response (``recv_into`` a reused buffer, the
body is not parsed), so on a small machine it takes little CPU from the
server it measures.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlsplit

_BUFFER = 1 << 20


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    length: int
    body: bytes  # only when asked to keep it


class Scraper:
    """One client connection to a /metrics URL, reused while the server allows."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.address = (parts.hostname, parts.port)
        self.path = parts.path or "/metrics"
        self._sock: Optional[socket.socket] = None
        self._buffer = memoryview(bytearray(_BUFFER))

    def connect(self) -> None:
        if self._sock is None:
            self._sock = socket.create_connection(self.address, timeout=120)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def get(self, gzip: bool = False, keep_body: bool = False) -> Response:
        reused = self._sock is not None
        try:
            return self._get(gzip, keep_body)
        except ConnectionError:
            self.close()
            if not reused:
                raise
            return self._get(gzip, keep_body)  # the server had closed the idle connection

    def _get(self, gzip: bool, keep_body: bool) -> Response:
        self.connect()
        sock = self._sock
        host, port = self.address
        request = f"GET {self.path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        sock.sendall((request + ("Accept-Encoding: gzip\r\n" if gzip else "") + "\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed before the headers ended")
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        kept = [rest] if keep_body else []
        received = len(rest)
        expected = int(headers["content-length"]) if "content-length" in headers else None
        while expected is None or received < expected:
            n = sock.recv_into(self._buffer)
            if n == 0:
                break
            received += n
            if keep_body:
                kept.append(bytes(self._buffer[:n]))
        if expected is not None and received != expected:
            raise ConnectionError(f"got {received} of {expected} body bytes")
        if expected is None or headers.get("connection", "").lower() == "close" or status_line.startswith("HTTP/1.0"):
            self.close()
        return Response(int(status_line.split()[1]), headers, received, b"".join(kept))


def fetch(url: str, gzip: bool = False, keep_body: bool = False) -> Response:
    scraper = Scraper(url)
    try:
        return scraper.get(gzip=gzip, keep_body=keep_body)
    finally:
        scraper.close()


def load(url: str, *, gzip: bool, scrapers: int, per_scraper: int) -> dict:
    """``scrapers`` threads each scrape ``per_scraper`` times back to back; latencies in seconds."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(scrapers)

    def scrape() -> None:
        scraper = Scraper(url)
        mine = []
        try:
            scraper.connect()
        finally:
            start.wait()
        for _ in range(per_scraper):
            began = time.perf_counter()
            try:
                response = scraper.get(gzip=gzip)
                if response.status != 200 or (gzip and response.headers.get("content-encoding") != "gzip"):
                    raise ConnectionError(f"status {response.status}, headers {response.headers}")
            except Exception as error:  # noqa: BLE001 - counted, reported by the caller
                scraper.close()
                with lock:
                    errors.append(repr(error))
                continue
            mine.append(time.perf_counter() - began)
        scraper.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=scrape, name=f"scraper-{i}") for i in range(scrapers)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"{len(errors)} scrapes of {url} failed, e.g. {errors[0]}")
    return {
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "requests": len(latencies),
        "elapsed": elapsed,
    }


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil(n * p / 100)
    return ordered[int(rank) - 1]
