"""Container health check: exit 0 when the exporter's /healthz answers 200, else 1.

Usage: python healthcheck.py [PORT]  (default 9744). The slim image has no
curl, so this uses urllib. Plain HTTP is tried first; when the exporter serves
TLS (--web.config.file) that connection fails and HTTPS is tried, without
certificate verification: the certificate names the server's public name, not
127.0.0.1, and nothing secret is sent. /healthz never asks for basic auth.
"""

from __future__ import annotations

import http.client
import ssl
import sys
import urllib.error
import urllib.request
from typing import Optional


def healthy(url: str, context: Optional[ssl.SSLContext] = None) -> Optional[bool]:
    """True on 200, False on another HTTP status, None when no HTTP answer came back."""
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as response:
            return response.status == 200
    except urllib.error.HTTPError:
        return False
    except (OSError, ValueError, http.client.HTTPException):
        return None


def main(argv: list[str]) -> int:
    port = argv[1] if len(argv) > 1 else "9744"
    result = healthy(f"http://127.0.0.1:{port}/healthz")
    if result is None:
        result = healthy(f"https://127.0.0.1:{port}/healthz", ssl._create_unverified_context())
    return 0 if result else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
