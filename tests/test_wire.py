"""The exporter's own websocket dial (``exporter.chain.wire``) against real websocket servers on
loopback: answers bounded at ``chain.max_response_bytes``, handshake refusals reported as the SDK
reports them, requests counted."""

from __future__ import annotations

import asyncio
from http import HTTPStatus

import pytest
from bittensor._transport.errors import RpcPolicyRejection, SubstrateRequestException
from websockets.asyncio.server import serve

from exporter.chain.wire import RequestCounter, ResponseTooLarge, counting_connect_factory
from exporter.snapshot.read_rules import InvalidRead

LIMIT = 2**20


async def _answer(ws, size: int) -> None:
    async for _request in ws:
        await ws.send("x" * size)


def run_against(handler, check, **server):
    async def main():
        async with serve(handler, "127.0.0.1", 0, **server) as server_:
            port = server_.sockets[0].getsockname()[1]
            return await check(f"ws://127.0.0.1:{port}")

    return asyncio.run(main())


def test_an_answer_within_the_limit_is_read_and_the_request_counted():
    counter = RequestCounter()

    async def check(url):
        connect = counting_connect_factory(counter, LIMIT)
        ws = await connect(url)
        await ws.send('{"jsonrpc":"2.0","id":1,"method":"state_getKeysPaged","params":[]}')
        answer = await ws.recv()
        await ws.close()
        return len(answer)

    assert run_against(lambda ws: _answer(ws, LIMIT), check) == LIMIT
    assert counter.totals() == {"state_getKeysPaged": 1}


def test_a_longer_answer_fails_at_its_header_and_so_does_every_redial():
    async def check(url):
        connect = counting_connect_factory(RequestCounter(), LIMIT)
        ws = await connect(url)
        await ws.send("{}")
        with pytest.raises(ResponseTooLarge) as error:
            await ws.recv()
        with pytest.raises(ResponseTooLarge) as again:
            await connect(url)  # the SDK's session redials: it gets the same error and gives up
        return error.value, again.value

    error, again = run_against(lambda ws: _answer(ws, LIMIT + 1), check)
    assert again is error
    assert isinstance(error, InvalidRead) and isinstance(error, SubstrateRequestException)
    assert error.rule == "response_too_large"
    assert error.detail.startswith("an answer longer than chain.max_response_bytes (1 MiB;")
    assert error.detail.endswith(f"exceeds limit of {LIMIT} bytes")


def test_an_answer_is_refused_at_its_header_before_any_of_it_is_read():
    """The server claims a 1 GiB answer and sends only the frame header: the client refuses it at
    once (it never waits for, let alone buffers, the payload)."""

    async def claim_a_gibibyte(ws):
        async for _request in ws:
            ws.transport.write(b"\x81\x7f" + (2**30).to_bytes(8, "big"))  # FIN, text, 64-bit length

    async def check(url):
        ws = await counting_connect_factory(RequestCounter(), LIMIT)(url)
        await ws.send("{}")
        with pytest.raises(ResponseTooLarge) as error:
            await asyncio.wait_for(ws.recv(), 5)
        return error.value

    assert run_against(claim_a_gibibyte, check).detail.endswith(f"frame with {2**30} bytes exceeds limit of {LIMIT} bytes")


def test_the_connection_is_dropped_at_once_when_the_peer_goes_on_sending():
    """A peer still sending the long answer (here: reading nothing more, so never answering the
    close) would hold the closing handshake, and the read past the SDK's response timeout, which
    then reported a timeout instead; the connection is dropped at once instead."""

    checked = asyncio.Event()

    async def claim_and_go_deaf(ws):
        async for _request in ws:
            ws.transport.pause_reading()  # the client's close frame is never read
            ws.transport.write(b"\x81\x7f" + (2**30).to_bytes(8, "big") + b"0" * 4096)
            await asyncio.wait_for(checked.wait(), 10)
            ws.transport.abort()

    async def check(url):
        ws = await counting_connect_factory(RequestCounter(), LIMIT)(url)
        await ws.send("{}")
        try:
            with pytest.raises(ResponseTooLarge):
                await asyncio.wait_for(ws.recv(), 2)
        finally:
            checked.set()

    run_against(claim_and_go_deaf, check)


@pytest.mark.parametrize("status, kind", [
    (HTTPStatus.TOO_MANY_REQUESTS, RpcPolicyRejection),
    (HTTPStatus.FORBIDDEN, RpcPolicyRejection),
    (HTTPStatus.SERVICE_UNAVAILABLE, SubstrateRequestException),
])
def test_a_refused_handshake_is_the_sdks_error_for_it(status, kind):
    """403 and 429 are the endpoint shutting this client out (the SDK does not retry those)."""

    def refuse(connection, request):
        response = connection.respond(status, "go away\n")
        response.headers["Retry-After"] = "30"
        return response

    async def check(url):
        with pytest.raises(SubstrateRequestException) as error:
            await counting_connect_factory(RequestCounter(), LIMIT)(url)
        return error.value

    error = run_against(lambda ws: _answer(ws, 1), check, process_request=refuse)
    assert type(error) is kind and f"HTTP {int(status)}" in str(error)
    if kind is RpcPolicyRejection:
        assert (error.status_code, error.retry_after) == (int(status), "30")
