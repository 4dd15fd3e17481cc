"""A websocket server on its own event loop in a daemon thread: the lifecycle the node and the proxy share.

A subclass gives ``_connection(ws)``, the handler of one client connection;
``start()`` returns once the socket listens (or raises what stopped it),
``stop()`` closes every connection and the listener, then ends the thread.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Optional

from websockets.asyncio.server import ServerConnection, serve


class BackgroundServer:
    thread_name = "websocket-server"

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self._port = port
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._server: Any = None
        self._startup_error: Optional[BaseException] = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self._port}"

    async def _connection(self, ws: ServerConnection) -> None:
        raise NotImplementedError

    def start(self):
        """Start serving on a daemon thread; returns once the socket listens."""
        if self._thread is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        ready = threading.Event()
        self._startup_error = None
        self._thread = threading.Thread(target=self._run, args=(ready,), name=self.thread_name, daemon=True)
        self._thread.start()
        ready.wait()
        if self._startup_error is not None:
            self._thread.join()
            self._thread = None
            raise self._startup_error
        return self

    def stop(self) -> None:
        """Close every connection and the listener, then end the thread."""
        if self._thread is None or self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            self._server = loop.run_until_complete(self._listen())
            self._port = self._server.sockets[0].getsockname()[1]
        except BaseException as error:  # surfaced to start()'s caller
            self._startup_error = error
            loop.close()
            ready.set()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()

    async def _listen(self) -> Any:
        # Created inside the running loop (websockets requires it). No
        # compression and no size cap: a real node (jsonrpsee) offers neither,
        # and metadata answers are ~600 kB of hex.
        return await serve(self._connection, self.host, self._port, max_size=None, compression=None)

    async def _shutdown(self) -> None:
        self._server.close()  # also closes open connections (code 1001)
        await self._server.wait_closed()
