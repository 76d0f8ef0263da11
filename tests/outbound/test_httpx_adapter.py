"""The httpx adapter of the Outbound port against a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from roomlog.outbound import OutboundError
from roomlog.outbound.httpx_adapter import HttpxOutbound
from roomlog.outbound.policy import blocked_address


class Receiver:
    """A tiny real HTTP/1.1 server: answers each POST with ``status`` after ``delay``."""

    def __init__(self, status: int = 200, delay: float = 0.0, body: bytes = b"ok") -> None:
        self.status, self.delay, self.body = status, delay, body
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Receiver:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/hook"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")[1:]
            headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines if x)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append((headers, body))
            await asyncio.sleep(self.delay)
            writer.write(b"HTTP/1.1 %d X\r\ncontent-length: %d\r\nretry-after: 7\r\n\r\n%s"
                         % (self.status, len(self.body), self.body))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def outbound() -> AsyncIterator[HttpxOutbound]:
    client = HttpxOutbound(allow_private=True)
    yield client
    await client.close()


async def test_posts_and_returns_any_status(outbound: HttpxOutbound) -> None:
    async with Receiver(status=429, body=b"slow down") as receiver:
        reply = await outbound.post(receiver.url, b"{}", {"webhook-id": "m1"}, within=5)
    assert reply.status == 429 and reply.body == b"slow down"
    assert reply.headers["retry-after"] == "7"
    headers, body = receiver.requests[0]
    assert body == b"{}" and headers["webhook-id"] == "m1"
    assert headers["host"].startswith("127.0.0.1:")


async def test_a_slow_receiver_is_a_timeout(outbound: HttpxOutbound) -> None:
    async with Receiver(delay=5) as receiver:
        with pytest.raises(OutboundError) as failed:
            await outbound.post(receiver.url, b"{}", {}, within=0.2)
    assert failed.value.kind == "timeout"


async def test_a_refused_connection_is_a_connect_failure(outbound: HttpxOutbound) -> None:
    async with Receiver() as receiver:
        url = receiver.url
    with pytest.raises(OutboundError) as failed:
        await outbound.post(url, b"{}", {}, within=2)
    assert failed.value.kind == "connect"


async def test_private_addresses_are_refused_unless_allowed() -> None:
    strict = HttpxOutbound()
    try:
        async with Receiver() as receiver:
            for url in (receiver.url, receiver.url.replace("127.0.0.1", "localhost")):
                with pytest.raises(OutboundError) as failed:
                    await strict.post(url, b"{}", {}, within=2)
                assert failed.value.kind == "refused_address"
            assert receiver.requests == []
    finally:
        await strict.close()
    with pytest.raises(OutboundError) as failed:
        await HttpxOutbound().post("ftp://example.com/x", b"", {}, within=1)
    assert failed.value.kind == "protocol"


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "192.168.0.9", "172.16.5.5",
                                     "169.254.169.254", "::1", "fe80::1", "::ffff:10.0.0.1",
                                     "0.0.0.0", "224.0.0.1", "fd00::1"])
def test_blocked_addresses(address: str) -> None:
    assert blocked_address(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
def test_public_addresses_pass(address: str) -> None:
    assert not blocked_address(address)
