"""Small fakes shared by tests: a publication to serve without a chain."""

from __future__ import annotations

import time
from typing import Optional

from exporter.serving.publication import Publication, RenderedSnapshot


def fake_publication(fresh: bool = True, data: Optional[RenderedSnapshot] = None, status: bytes = b"# status\n",
                     withdrawn: bytes = b"# withdrawn\n", last_success: Optional[float] = None) -> Publication:
    """A publication as the refresh thread would make it; ``fresh``: its last success is now."""
    if last_success is None and fresh:
        last_success = time.time()
    return Publication(generation=1, up=fresh, data=data, status=status, status_withdrawn=withdrawn,
                       last_success=last_success, stale_after_seconds=180, withdraw_after_seconds=900)
