"""Run an object in a child process and call its methods over a pipe.

Each side of the benchmark (the simulated node, the exporter, the baseline
clients and servers) lives in its own ``spawn``-ed process: its CPU time and
peak RSS are its own, and its threads never share a GIL with the others.
"""

from __future__ import annotations

import multiprocessing
import traceback
from typing import Any, Callable


def _serve(conn, factory: Callable[..., Any], args: tuple) -> None:
    try:
        target = factory(*args)
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send((False, traceback.format_exc()))
        return
    conn.send((True, None))
    while True:
        message = conn.recv()
        if message is None:
            break
        method, call_args = message
        try:
            conn.send((True, getattr(target, method)(*call_args)))
        except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
            conn.send((False, traceback.format_exc()))
    close = getattr(target, "close", None)
    if close is not None:
        close()
    conn.send((True, None))


class WorkerError(RuntimeError):
    """A call failed in the child process; the message is its traceback."""


class Worker:
    """``factory(*args)`` built in a child process; ``call(name, ...)`` runs its methods there."""

    def __init__(self, factory: Callable[..., Any], *args: Any, timeout: float = 600.0):
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._timeout = timeout
        self.process = context.Process(target=_serve, args=(child, factory, args), daemon=True)
        self.process.start()
        child.close()
        self._receive()  # the constructor's outcome

    @property
    def pid(self) -> int:
        return self.process.pid

    def _receive(self) -> Any:
        if not self._conn.poll(self._timeout):
            raise WorkerError(f"worker {self.pid} did not answer within {self._timeout} s")
        ok, value = self._conn.recv()
        if not ok:
            raise WorkerError(value)
        return value

    def call(self, method: str, *args: Any) -> Any:
        self._conn.send((method, args))
        return self._receive()

    def close(self) -> None:
        if self.process.is_alive():
            try:
                self._conn.send(None)
                self._receive()
            except (OSError, EOFError, WorkerError):
                pass
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)
        self._conn.close()

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()
