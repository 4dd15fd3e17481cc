"""A fork server ("zygote"): import a program once, then start each run of it as a forked child.

The crash tests start the exporter (or a history writer) dozens of times and
SIGKILL each one. A fresh interpreter importing the exporter costs over a
second; the zygote pays that once. It imports the modules named on its command
line, checks that doing so started no thread (a fork copies only the calling
thread, so a child of a threaded parent could inherit a lock held forever),
and then, per request, forks a child that redirects its standard streams and
calls ``module:function(argv)`` -- for the exporter, ``exporter.cli:main``, the
same entry point ``python -m exporter`` runs. The child is a real, separate
process: the test kills it by its pid, and the zygote (its parent) reaps it.

Protocol: one JSON object per line on stdin, one answer per line on stdout.

    started                   -> {"ready": true, "pid": ..., "threads": 1}
    {"spawn": "mod:func", "argv": [...], "stdout": path|null, "stderr": path|null}
                              -> {"pid": N}
    {"wait": N}               -> {"pid": N, "returncode": R}   (R < 0: killed by signal -R)
    {"poll": N}               -> {"pid": N, "returncode": R or null while it runs}

End of stdin: children still running are killed (SIGKILL, by pid) and reaped.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import signal
import subprocess
import sys
import threading
import traceback
from pathlib import Path
from typing import Optional, Sequence

PR_SET_PDEATHSIG = 1
REPO = Path(__file__).resolve().parent.parent


def _die_with_parent() -> None:
    """Linux: the child gets SIGKILL if the zygote dies, so no run outlives the test."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _redirect(fd: int, path: Optional[str], flags: int) -> None:
    target = os.open(path or os.devnull, flags, 0o644)
    os.dup2(target, fd)
    os.close(target)


def _child(zygote: int, target: str, argv: list[str], stdout: Optional[str], stderr: Optional[str]) -> None:
    """Runs in the forked child; never returns."""
    code = 1
    try:
        _die_with_parent()
        if os.getppid() != zygote:  # the zygote died before prctl took effect
            os._exit(1)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _redirect(0, None, os.O_RDONLY)
        _redirect(1, stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        _redirect(2, stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        module, function = target.split(":")
        result = getattr(importlib.import_module(module), function)(argv)
        code = result if isinstance(result, int) else 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:  # noqa: BLE001 - report it the way an interpreter would, then exit
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(code)


def _preload(name: str) -> None:
    """Import ``name``; ``package.*`` imports the package and every module in it (but
    ``__main__``), so the list needs no update when modules move."""
    if not name.endswith(".*"):
        importlib.import_module(name)
        return
    package = importlib.import_module(name[:-2])
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if module.name.rpartition(".")[2] != "__main__":
            importlib.import_module(module.name)


def serve(preload: Sequence[str]) -> int:
    for name in preload:
        _preload(name)
    answers = sys.stdout
    threads = threading.active_count()
    try:  # threads a C extension started are invisible to ``threading``; the kernel sees them
        threads = max(threads, len(os.listdir("/proc/self/task")))
    except OSError:
        pass
    answers.write(json.dumps({"ready": threads == 1, "pid": os.getpid(), "threads": threads,
                              "thread_names": [t.name for t in threading.enumerate()]}) + "\n")
    answers.flush()
    if threads != 1:
        return 1
    children: set[int] = set()
    finished: dict[int, int] = {}
    try:
        for line in sys.stdin:
            request = json.loads(line)
            if "spawn" in request:
                sys.stdout.flush()
                sys.stderr.flush()
                zygote = os.getpid()
                pid = os.fork()
                if pid == 0:
                    _child(zygote, request["spawn"], request.get("argv", []), request.get("stdout"), request.get("stderr"))
                children.add(pid)
                answer = {"pid": pid}
            elif "poll" in request or "wait" in request:
                pid = int(request.get("poll", request.get("wait")))
                if pid not in finished:
                    done, status = os.waitpid(pid, os.WNOHANG if "poll" in request else 0)
                    if done:
                        children.discard(pid)
                        finished[pid] = os.waitstatus_to_exitcode(status)
                answer = {"pid": pid, "returncode": finished.get(pid)}
            else:
                answer = {"error": f"unknown request {request!r}"}
            answers.write(json.dumps(answer) + "\n")
            answers.flush()
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
    return 0


class ForkServer:
    """The test's side: start the zygote, spawn runs, reap them.

    ``with ForkServer(["exporter.*"]) as zygote:
        pid = zygote.spawn("exporter.cli:main", [...], stderr=log)
        os.kill(pid, signal.SIGKILL); zygote.wait(pid)``
    """

    def __init__(self, preload: Sequence[str]):
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fork_server", *preload],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )
        self._live: set[int] = set()
        hello = self._read()
        if not hello.get("ready"):
            self.close()
            raise RuntimeError(f"the fork server cannot fork safely: threads after import: {hello.get('thread_names')}")
        self.pid = hello["pid"]

    def _read(self) -> dict:
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fork server exited (code {self._proc.wait()})")
        return json.loads(line)

    def _ask(self, request: dict) -> dict:
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        return self._read()

    def spawn(self, target: str, argv: Sequence[str], *, stdout: Optional[Path] = None, stderr: Optional[Path] = None) -> int:
        """Fork a child that runs ``target`` ("module:function") with ``argv``; its pid."""
        pid = self._ask({"spawn": target, "argv": list(argv), "stdout": stdout and str(stdout), "stderr": stderr and str(stderr)})["pid"]
        self._live.add(pid)
        return pid

    def poll(self, pid: int) -> Optional[int]:
        """The child's exit code if it has exited (it is then reaped), else None."""
        answer = self._ask({"poll": pid})
        if answer["returncode"] is not None:
            self._live.discard(pid)
        return answer["returncode"]

    def wait(self, pid: int) -> int:
        """Reap a child; its exit code, negative for the signal that killed it (as subprocess does)."""
        answer = self._ask({"wait": pid})
        self._live.discard(pid)
        return answer["returncode"]

    def close(self) -> None:
        """Kill the children still running (by pid), then let the zygote exit."""
        for pid in list(self._live):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._live.clear()
        if self._proc.stdin and not self._proc.stdin.closed:
            try:
                self._proc.stdin.close()
            except BrokenPipeError:
                pass
        try:
            self._proc.wait(timeout=30)
        finally:
            self._proc.stdout.close()

    def __enter__(self) -> "ForkServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1:]))
