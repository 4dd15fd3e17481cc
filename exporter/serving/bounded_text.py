"""Bounded renderings of what a web config file holds, for its error messages."""

from __future__ import annotations

from typing import Any


def bounded_repr(value: Any, limit: int = 60) -> str:
    """A bounded rendering of a value from the file, for error messages."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        text = repr(value)
        return text if len(text) <= limit else text[: limit - 3] + "..."
    return f"a {type(value).__name__}"


def bounded_text(value: str, limit: int = 60) -> str:
    """A bounded, unquoted rendering of a string (a key, an error message) for error messages."""
    text = value.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[: limit - 3] + "..."
