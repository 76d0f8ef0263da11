"""The asyncio HTTP/1.1 adapter of the Outbound port (webhooks and command hooks)
against real servers on loopback: statuses, timeouts, refusals and the address
policy, keep-alive, chunked and capped bodies, and a pooled connection the server
closed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from roomlog.outbound import OutboundError
from roomlog.outbound.http11 import Http11Outbound
from tests.outbound.receiver import Receiver

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def outbound() -> AsyncIterator[Http11Outbound]:
    client = Http11Outbound(allow_private=True)
    yield client
    await client.close()


async def serve(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook?x=1"


async def test_posts_and_returns_any_status(outbound: Http11Outbound) -> None:
    async with Receiver(status=429, body=b"slow down") as receiver:
        reply = await outbound.post(receiver.url, b"{}", {"webhook-id": "m1"}, within=5)
    assert reply.status == 429 and reply.body == b"slow down"
    assert reply.headers["retry-after"] == "7"
    headers, body = receiver.requests[0]
    assert body == b"{}" and headers["webhook-id"] == "m1"
    assert headers["host"].startswith("127.0.0.1:")


async def test_timeouts_refusals_and_policy(outbound: Http11Outbound) -> None:
    async with Receiver(delay=5) as receiver:
        with pytest.raises(OutboundError) as failed:
            await outbound.post(receiver.url, b"{}", {}, within=0.2)
        assert failed.value.kind == "timeout"
        url = receiver.url
    with pytest.raises(OutboundError) as failed:
        await outbound.post(url, b"{}", {}, within=2)
    assert failed.value.kind == "connect"
    strict = Http11Outbound()
    async with Receiver() as receiver:
        for target in (receiver.url, receiver.url.replace("127.0.0.1", "localhost")):
            with pytest.raises(OutboundError) as failed:
                await strict.post(target, b"{}", {}, within=2)
            assert failed.value.kind == "refused_address"
        assert receiver.requests == []
    with pytest.raises(OutboundError) as failed:
        await strict.post("ftp://example.com/x", b"", {}, within=1)
    assert failed.value.kind == "protocol"


async def test_keep_alive_reuses_one_connection_and_survives_its_close(
        outbound: Http11Outbound) -> None:
    connections: list[int] = []
    targets: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            for _ in range(3):  # then close, as a server whose keep-alive timed out
                head = await reader.readuntil(b"\r\n\r\n")
                targets.append(head.split(b" ")[1])
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        writer.close()

    server, url = await serve(handler)
    async with server:
        for i in range(5):
            reply = await outbound.post(url, b"x" * i, {}, within=5)
            assert reply.status == 204
            await asyncio.sleep(0.01)  # the third answer's close reaches the client
    assert len(connections) == 2 and targets == [b"/hook?x=1"] * 5


@pytest.mark.parametrize("answer, body", [
    (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
     b"abcde"),
    (b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n" + b"y" * 100_000, b"y" * 10),
    (b"HTTP/1.0 500 Oops\r\n\r\nuntil close", b"until clos"),
])
async def test_bodies_are_read_and_capped(outbound: Http11Outbound, answer: bytes,
                                          body: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    server, url = await serve(handler)
    async with server:
        reply = await outbound.post(url, b"", {}, within=5, max_body=10)
    assert reply.body == body[:10]


async def test_garbage_is_a_protocol_failure(outbound: Http11Outbound) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await writer.drain()
        writer.close()

    server, url = await serve(handler)
    async with server:
        with pytest.raises(OutboundError) as failed:
            await outbound.post(url, b"", {}, within=5)
    assert failed.value.kind == "protocol"
