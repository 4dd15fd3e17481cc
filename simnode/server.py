"""Serve a ChainState over websocket JSON-RPC from a background thread, like a node.

Each frame is answered by its own task, so concurrent requests overlap as on
a real node; ``latency`` is slept once per frame (a batch costs one round
trip). ``fault`` lets a test replace any answer (see ``SimNode.fault``).
"""

from __future__ import annotations

import asyncio
import collections
import json
import threading

try:  # a real node serialises in Rust; the simulated one should not be what a benchmark waits on
    import orjson
except ImportError:  # pragma: no cover - orjson is one of the exporter's dependencies
    orjson = None


def _dumps(body: Any) -> str:
    if orjson is not None:
        try:
            return orjson.dumps(body).decode()
        except TypeError:  # what orjson cannot write (integers past 64 bits, ...): a test's fault
            pass
    return json.dumps(body)


def _loads(message: str | bytes) -> Any:
    if orjson is not None:
        try:
            return orjson.loads(message)
        except ValueError:  # what only the standard library reads (NaN, huge integers), or garbage
            pass
    return json.loads(message)
from typing import Any, Callable, Optional

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from simnode.background import BackgroundServer
from simnode.rpc import RpcError, dispatch
from simnode.state import ChainState

_DROP = object()  # an answer meaning "kill the connection instead"


def _response(request_id: Any, *, result: Any = None, error: Optional[dict] = None) -> str:
    body: dict = {"jsonrpc": "2.0"}
    if error is not None:
        body["error"] = error
    else:
        body["result"] = result
    body["id"] = request_id
    return _dumps(body)


class SimNode(BackgroundServer):
    thread_name = "simnode"
    fault: Optional[Callable[[str, Any], Optional[tuple]]]
    """Called as ``fault(method, params)`` on the server thread before each
    request is answered. Return None to answer normally, or one of
    ``("error", code, message)``, ``("delay", seconds)`` (then answer
    normally), ``("raw", text)`` (send ``text`` as-is; inside a batch it is
    spliced in as that element), ``("drop",)`` (abort the connection without
    answering the frame), ``("result", value)``."""

    def __init__(
        self, state: ChainState, host: str = "127.0.0.1", port: int = 0, latency: float = 0.0
    ):
        super().__init__(host, port)
        self.state = state
        self.latency = latency
        self.fault = None
        self._lock = threading.Lock()
        self._in_flight = 0
        self.reset_counters()

    # -- counters ----------------------------------------------------------------

    def reset_counters(self) -> None:
        with self._lock:
            self.requests: collections.Counter = collections.Counter()
            self.frames = 0
            # Restart the high-water mark from what is in flight right now.
            self.max_in_flight = self._in_flight

    def _enter(self, requests: list) -> None:
        with self._lock:
            self.frames += 1
            for request in requests:
                method = request.get("method") if isinstance(request, dict) else None
                self.requests[method if isinstance(method, str) else "<invalid>"] += 1
            self._in_flight += len(requests)
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _leave(self, count: int) -> None:
        with self._lock:
            self._in_flight -= count

    # -- serving -----------------------------------------------------------------

    async def _connection(self, ws: ServerConnection) -> None:
        tasks: set[asyncio.Task] = set()
        try:
            async for message in ws:
                # One task per frame: a slow answer must not block the next one.
                task = asyncio.create_task(self._frame(ws, message))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except ConnectionClosed:
            pass
        finally:
            for task in tasks:
                task.cancel()

    async def _frame(self, ws: ServerConnection, message: str | bytes) -> None:
        try:
            payload = _loads(message)
        except ValueError:
            with self._lock:
                self.frames += 1
            await self._send(ws, _response(None, error={"code": -32700, "message": "Parse error"}))
            return
        batch = isinstance(payload, list)
        requests = payload if batch else [payload]
        self._enter(requests)
        try:
            if not requests:
                answer = _response(None, error={"code": -32600, "message": "Invalid request"})
            else:
                latency = self.latency
                if latency > 0:
                    await asyncio.sleep(latency)
                answers = await asyncio.gather(*(self._answer(r) for r in requests))
                if any(a is _DROP for a in answers):
                    ws.transport.abort()  # like a network drop: no close frame
                    return
                answer = "[" + ",".join(answers) + "]" if batch else answers[0]
            await self._send(ws, answer)
        finally:
            self._leave(len(requests))

    @staticmethod
    async def _send(ws: ServerConnection, text: str) -> None:
        try:
            await ws.send(text)
        except ConnectionClosed:
            pass  # the client went away; nobody is waiting for this answer

    async def _answer(self, request: Any) -> Any:
        """One request's response text (or ``_DROP``)."""
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            error = {"code": -32600, "message": "Invalid request"}
            return _response(request.get("id") if isinstance(request, dict) else None, error=error)
        request_id = request.get("id")
        try:
            return await self._result(request_id, request["method"], request.get("params"))
        except RpcError as error:
            return _response(request_id, error=error.to_json())
        except Exception as error:  # a simulator/fault bug: answer instead of hanging the client
            return _response(
                request_id, error={"code": -32603, "message": f"Internal error: {error!r}"}
            )

    async def _result(self, request_id: Any, method: str, params: Any) -> Any:
        fault = self.fault
        action = fault(method, params) if fault is not None else None
        if action is not None:
            kind = action[0]
            if kind == "delay":
                await asyncio.sleep(action[1])
            elif kind == "error":
                return _response(request_id, error={"code": action[1], "message": action[2]})
            elif kind == "raw":
                return action[1]
            elif kind == "drop":
                return _DROP
            elif kind == "result":
                return _response(request_id, result=action[1])
            else:
                raise ValueError(f"unknown fault action {action!r}")
        return _response(request_id, result=dispatch(self.state, method, params))
