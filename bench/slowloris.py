"""Slow clients against the exporter's HTTP server for a while, with a Prometheus-like scraper beside them.

``python -m bench.slowloris [--clients 300] [--seconds 60]``: each slow client
connects, sends a request line and then one header line every 2 s, and
reconnects when the server cuts it off (its head deadline is the default
10 s); a third just connect and stay silent. Meanwhile one scraper fetches
``/metrics`` every 250 ms. Prints how many scrapes got 200 and their latency.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import threading
import time
import urllib.request

from exporter.logs import configure_logging
from exporter.serving.routes import MetricsSource
from exporter.serving.server import MAX_CONNECTIONS, MetricsServer
from tests.fakes import fake_publication


def slow_client(port: int, idle: bool, stop: threading.Event, cuts: list) -> None:
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                started = time.monotonic()
                if not idle:
                    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                while not stop.is_set():
                    if not idle:
                        s.sendall(b"X-Slow: 1\r\n")
                    s.settimeout(2)
                    try:
                        if s.recv(1024) == b"":
                            break
                    except socket.timeout:
                        continue
                cuts.append(time.monotonic() - started)
        except OSError:
            cuts.append(-1.0)
            stop.wait(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    configure_logging("warning", "console")  # one debug line per cut-off client would drown the result
    # Every client is 127.0.0.1, the scraper too: the per-client limit is lifted to see the deadlines at work.
    server = MetricsServer("127.0.0.1", 0, MetricsSource(lambda: fake_publication(status=b"# status\n" * 2000)),
                           max_connections_per_client=MAX_CONNECTIONS)
    server.start()
    stop, cuts = threading.Event(), []
    threads = [threading.Thread(target=slow_client, args=(server.port, i % 3 == 0, stop, cuts), daemon=True)
               for i in range(args.clients)]
    for t in threads:
        t.start()
    statuses, latencies = [], []
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        started = time.monotonic()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=15) as response:
                response.read()
                statuses.append(response.status)
        except Exception as error:  # noqa: BLE001 - counted, not raised
            statuses.append(getattr(error, "code", type(error).__name__))
        latencies.append(time.monotonic() - started)
        time.sleep(0.25)
    stop.set()
    for t in threads:
        t.join(timeout=5)
    server.stop()
    ok = sum(1 for s in statuses if s == 200)
    cut = sorted(c for c in cuts if c >= 0)
    resets = sum(1 for c in cuts if c < 0)
    print(f"{args.clients} slow clients for {args.seconds:.0f} s: {ok}/{len(statuses)} scrapes 200; "
          f"latency median {statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms; "
          f"slow connections closed by the server: {len(cut)} (median after {statistics.median(cut) if cut else float('nan'):.1f} s), "
          f"reset: {resets}")


if __name__ == "__main__":
    main()
