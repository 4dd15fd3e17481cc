"""A process's output read line by line on a thread, so that a test waits for the line that says
something happened instead of sleeping and looking."""

from __future__ import annotations

import threading
from typing import Callable, IO


class LogLines:
    def __init__(self, stream: IO[str]):
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._ended = False
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        try:
            for line in stream:
                with self._changed:
                    self._lines.append(line.rstrip("\n"))
                    self._changed.notify_all()
        finally:
            stream.close()  # read to its end: this thread is its only reader
            with self._changed:
                self._ended = True
                self._changed.notify_all()

    def wait_for(self, done: Callable[[list[str]], bool], timeout: float, what: str = "a log line") -> list[str]:
        """The lines so far, once ``done(lines)``; AssertionError after ``timeout`` s or at the end of the output."""
        with self._changed:
            if self._changed.wait_for(lambda: done(self._lines) or self._ended, timeout) and done(self._lines):
                return list(self._lines)
            tail = "\n".join(self._lines[-20:])
        raise AssertionError(f"no {what} within {timeout:g} s\n{tail}")

    def close(self, timeout: float = 20) -> str:
        """Every line, once the stream has ended (the process exited)."""
        self._thread.join(timeout)
        with self._changed:
            return "\n".join(self._lines) + "\n"
