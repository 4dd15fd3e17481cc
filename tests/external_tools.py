"""Find a Debian tool a test drives (prometheus, docker-compose...): skip locally, fail in CI."""

from __future__ import annotations

import os
import shutil

import pytest


def require_tool(*names: str) -> str:
    """The path of the first of ``names`` on PATH.

    Missing everywhere: the test fails when env ``CI`` is "true" (CI installs
    these tools, see .ci/run, so absence there is a broken setup, not a reason
    to pass silently), and is skipped with the reason elsewhere.
    """
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    message = f"{' / '.join(names)} not found on PATH (Debian: apt-get install the package providing it; .ci/run does)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
