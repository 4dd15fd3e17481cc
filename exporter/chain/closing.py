"""Close an SDK connection within a deadline, whatever state it is in."""

from __future__ import annotations

import asyncio

from bittensor._transport.interface import SubstrateConnection


async def close_quietly(conn: SubstrateConnection, seconds: float) -> None:
    """Close ``conn`` within ``seconds``; whatever happens, nothing is raised or left unretrieved.

    The SDK's close cancels its supervisor task and awaits it. On Python 3.11
    ``asyncio.wait_for`` loses a cancellation that races the arrival of a frame
    (bpo-42130, fixed in 3.12): the supervisor then pumps on until its response
    timeout, and the close with it. So the supervisor is cancelled again while
    the close waits. (``_session._supervisor`` is private to bittensor 11.x, like
    the rest of the transport this module relies on; without it, the close
    simply waits.)
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    closing = asyncio.ensure_future(conn.close())
    try:
        while not closing.done():
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await asyncio.wait({closing}, timeout=min(0.05, remaining))
            supervisor = getattr(getattr(conn, "_session", None), "_supervisor", None)
            if not closing.done() and isinstance(supervisor, asyncio.Task) and not supervisor.done():
                supervisor.cancel()
    finally:
        if not closing.done():
            closing.cancel()
            await asyncio.wait({closing}, timeout=0.5)
        if closing.done() and not closing.cancelled():
            closing.exception()  # retrieved: closing a broken connection may fail; nothing to do
