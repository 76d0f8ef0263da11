"""A tiny real HTTP/1.1 server on loopback for the Outbound adapter's tests."""

from __future__ import annotations

import asyncio


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
