"""A misbehaving endpoint: a websocket JSON-RPC proxy that corrupts chosen answers of a real node.

``CorruptingProxy(upstream_url)`` forwards every frame to the node behind it
(one upstream connection per client connection, requests pipelined as the
client sends them) and passes each answer's ``result`` through ``corrupt``,
a hook ``(method, params, result) -> result`` that the test may swap at any
time. ``None`` as the hook forwards answers unchanged. Errors, batches and
ids pass through; only results are rewritten.

The hooks below are the building blocks of the corruption modes: each
returns a hook, and ``combine`` chains several.
"""

from __future__ import annotations

import asyncio
import collections
import json
import threading
from typing import Any, Callable, Iterable, Optional

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection

from simnode.background import BackgroundServer
from websockets.exceptions import ConnectionClosed

Hook = Callable[[str, list, Any], Any]


class CorruptingProxy(BackgroundServer):
    thread_name = "corrupting-proxy"
    corrupt: Optional[Hook]

    def __init__(self, upstream: str, host: str = "127.0.0.1", port: int = 0):
        super().__init__(host, port)
        self.upstream = upstream
        self.corrupt = None
        self._lock = threading.Lock()
        self.reset_counters()

    # -- counters ----------------------------------------------------------------

    def reset_counters(self) -> None:
        with self._lock:
            self.requests: collections.Counter = collections.Counter()  # by method, as clients sent them
            self.keys_listed = 0  # keys in the state_getKeysPaged answers clients received

    # -- forwarding --------------------------------------------------------------

    async def _connection(self, client: ServerConnection) -> None:
        asked: dict[Any, tuple[str, list]] = {}  # request id -> (method, params), until answered
        try:
            async with connect(self.upstream, max_size=None, compression=None) as upstream:
                answers = asyncio.create_task(self._answers(upstream, client, asked))
                try:
                    async for frame in client:
                        self._note(frame, asked)
                        await upstream.send(frame)
                finally:
                    answers.cancel()
        except (ConnectionClosed, OSError):
            pass

    async def _answers(self, upstream, client: ServerConnection, asked: dict) -> None:
        try:
            async for frame in upstream:
                await client.send(self._rewrite(frame, asked))
        except ConnectionClosed:
            pass
        await client.close()

    def _note(self, frame: str | bytes, asked: dict) -> None:
        try:
            payload = json.loads(frame)
        except ValueError:
            return
        for request in payload if isinstance(payload, list) else [payload]:
            if isinstance(request, dict) and isinstance(request.get("method"), str):
                asked[request.get("id")] = (request["method"], request.get("params") or [])
                with self._lock:
                    self.requests[request["method"]] += 1

    def _rewrite(self, frame: str | bytes, asked: dict) -> str | bytes:
        try:
            payload = json.loads(frame)
        except ValueError:
            return frame
        answers = payload if isinstance(payload, list) else [payload]
        for answer in answers:
            if not isinstance(answer, dict) or answer.get("id") not in asked:
                continue
            method, params = asked.pop(answer["id"])
            hook = self.corrupt
            if hook is not None and "result" in answer:
                answer["result"] = hook(method, params, answer["result"])
            if method == "state_getKeysPaged" and isinstance(answer.get("result"), list):
                with self._lock:
                    self.keys_listed += len(answer["result"])
        return json.dumps(payload)


# -- hooks ------------------------------------------------------------------------


def on(method: str, rewrite: Callable[[list, Any], Any]) -> Hook:
    """``rewrite(params, result)`` for answers to ``method``; others pass."""
    return lambda m, params, result: rewrite(params, result) if m == method else result


def combine(*hooks: Hook) -> Hook:
    def hook(method: str, params: list, result: Any) -> Any:
        for h in hooks:
            result = h(method, params, result)
        return result

    return hook


def replace_result(method: str, value: Any) -> Hook:
    return on(method, lambda params, result: value)


def replace_values(values: dict[str, Optional[str]]) -> Hook:
    """In ``state_queryStorageAt`` answers, the value of each key in ``values`` (hex keys) becomes the given one."""

    def rewrite(params: list, result: Any) -> Any:
        for group in result or []:
            group["changes"] = [[k, values[k] if k in values else v] for k, v in group["changes"]]
        return result

    return on("state_queryStorageAt", rewrite)


def null_values(prefix: str) -> Hook:
    """``state_queryStorageAt`` answers say every key under ``prefix`` has no value."""

    def rewrite(params: list, result: Any) -> Any:
        for group in result or []:
            group["changes"] = [[k, None if k.startswith(prefix) else v] for k, v in group["changes"]]
        return result

    return on("state_queryStorageAt", rewrite)


def drop_half_of_the_answer() -> Hook:
    """``state_queryStorageAt`` answers lose every second key."""

    def rewrite(params: list, result: Any) -> Any:
        for group in result or []:
            group["changes"] = group["changes"][::2]
        return result

    return on("state_queryStorageAt", rewrite)


def rewrite_pages(rewrite: Callable[[list, list[str]], list[str]]) -> Hook:
    """``state_getKeysPaged`` answers become ``rewrite(params, keys)``."""
    return on("state_getKeysPaged", lambda params, keys: rewrite(params, keys or []))


def made_up_pages(page: Callable[[list], list[str]], fill: str = "0x00") -> Hook:
    """Key pages made up by ``page(params)``; their keys get ``fill`` as value when asked for.

    The node knows none of those keys; a client that pages on and fetches
    values gets a plausible-looking value for each.
    """
    made: set[str] = set()

    def keys(params: list, result: Any) -> list[str]:
        out = page(params)
        made.update(out)
        return out

    def values(params: list, result: Any) -> Any:
        for group in result or []:
            group["changes"] = [[k, fill if v is None and k in made else v] for k, v in group["changes"]]
        return result

    return combine(on("state_getKeysPaged", keys), on("state_queryStorageAt", values))


def endless_pages(fill: str = "0x00", prefixes: Optional[Iterable[str]] = None) -> Hook:
    """Every key page (under one of ``prefixes``, or any) is a full page of keys made up right after the start key, forever."""
    only = None if prefixes is None else tuple(prefixes)

    def page(params: list) -> list[str]:
        prefix, count, start = params[0], params[1], params[2] if len(params) > 2 else None
        base = start if start and len(start) > len(prefix) else prefix
        return [f"{base}{i:08x}" for i in range(1, count + 1)]

    made_up = made_up_pages(page, fill)
    if only is None:
        return made_up

    def hook(method: str, params: list, result: Any) -> Any:
        if method == "state_getKeysPaged" and not str(params[0]).startswith(only):
            return result
        return made_up(method, params, result)

    return hook


def oversized(method: str, size: int) -> Hook:
    """Answers of ``method`` are a hex string of ``size`` characters: longer than a node sends."""
    text = "0x" + "0" * (size - 2)
    return on(method, lambda params, result: text)


def header_number(number: Any) -> Hook:
    """``chain_getHeader`` says the block has this ``number`` (a hex string, as nodes send it)."""
    return on("chain_getHeader", lambda params, header: {**header, "number": number} if header else header)


def other_block(block_hash: str) -> Hook:
    """``state_queryStorageAt`` answers claim to be values of another block."""

    def rewrite(params: list, result: Any) -> Any:
        for group in result or []:
            group["block"] = block_hash
        return result

    return on("state_queryStorageAt", rewrite)


def extra_changes(changes: Iterable[tuple[str, Optional[str]]]) -> Hook:
    """``state_queryStorageAt`` answers carry these (key, value) pairs too."""
    changes = [list(c) for c in changes]

    def rewrite(params: list, result: Any) -> Any:
        for group in (result or [])[:1]:
            group["changes"] = group["changes"] + changes
        return result

    return on("state_queryStorageAt", rewrite)


def duplicate_first_change() -> Hook:
    def rewrite(params: list, result: Any) -> Any:
        for group in (result or [])[:1]:
            group["changes"] = group["changes"][:1] + group["changes"]
        return result

    return on("state_queryStorageAt", rewrite)
