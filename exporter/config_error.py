"""The one error for an unusable configuration, and bounded renderings of bad values for its messages.

Its own module so the config validation and the file reading (``exporter.yaml_safe``)
both use it without importing each other; no message repeats a huge or hostile value.
"""

from __future__ import annotations

from typing import Any

MAX_PROBLEMS_LISTED = 50
_VALUE_REPR_CHARS = 80


class ConfigError(Exception):
    """A config that cannot be used; ``problems`` lists every reason, one a line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        listed = problems[:MAX_PROBLEMS_LISTED]
        more = len(problems) - len(listed)
        lines = [f"  - {p}" for p in listed] + ([f"  ... and {more} more problems"] if more > 0 else [])
        super().__init__("invalid configuration:\n" + "\n".join(lines))


def kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def short(value: Any) -> str:
    """``repr(value)``, bounded: an error message never repeats a huge or hostile value."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - e.g. an int beyond str()'s digit limit
        if isinstance(value, int):
            return f"an integer of {value.bit_length()} bits"
        return f"a {kind(value)}"
    return text if len(text) <= _VALUE_REPR_CHARS else text[: _VALUE_REPR_CHARS - 3] + "..."


def clip(text: str, limit: int = _VALUE_REPR_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
