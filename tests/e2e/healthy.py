"""A healthy client beside an attacker, and probes of what a server holds open.

:class:`Bystander` holds a WebSocket subscription to a room of its own on a
server and publishes into it now and then (:meth:`Bystander.beat`) while a test
attacks the same server. :meth:`Bystander.check` proves that every message it
published came back to it, once, in seq order, with no error and no close.

:func:`until_long_polls` waits until a server holds a number of long-polls open
(its ``roomlog_connections{transport="longpoll"}`` gauge), so a test acts only
once the request it started is really waiting.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from typing import Any

import httpx

from roomlog.identity import Role
from tests.e2e.support import TIMEOUT, Server, WsClient, open_client, unique_room

__all__ = ["Bystander", "long_polls", "until_long_polls"]


class Bystander:
    def __init__(self, client: WsClient, room: str) -> None:
        self.client = client
        self.room = room
        self.sent: list[Any] = []
        self.checked = 0  # how many of ``sent`` came back by the last check

    @classmethod
    async def join(cls, srv: Server, *, user: str | None = None) -> Bystander:
        client = await open_client(srv.ws_url, user=user or f"healthy-{secrets.token_hex(3)}",
                                   role=Role.GUEST)
        room = unique_room()
        await client.subscribe(room)
        return cls(client, room)

    async def beat(self) -> None:
        """Publish one message (and wait for its ack)."""
        data = {"beat": len(self.sent) + 1}
        ack = await self.client.publish(self.room, data)
        assert ack["seq"] == len(self.sent) + 1 and not ack["duplicate"], ack
        self.sent.append(data)

    async def check(self) -> None:
        """One more beat, then: every beat came back in order, nothing else failed."""
        await self.beat()
        got = await self.client.messages(self.room, len(self.sent) - self.checked)
        assert [m["data"] for m in got] == self.sent[self.checked:]
        assert [m["seq"] for m in got] == list(range(self.checked + 1, len(self.sent) + 1))
        errors = [f for f in self.client.frames if f["type"] == "error"]
        assert not errors and self.client.close_code is None, (errors, self.client.close_code)
        self.checked = len(self.sent)

    async def close(self) -> None:
        await self.client.close()


async def long_polls(http: httpx.AsyncClient, srv: Server) -> int:
    """How many long-polls the server holds open now."""
    text = (await http.get(f"{srv.base}/metrics")).text
    match = re.search(r'^roomlog_connections\{transport="longpoll"\} (\S+)$', text, re.M)
    assert match is not None, text[:2000]
    return int(float(match[1]))


async def until_long_polls(http: httpx.AsyncClient, srv: Server, n: int) -> None:
    """Until the server holds at least ``n`` long-polls open (TIMEOUT: a broken server)."""
    deadline = time.monotonic() + TIMEOUT
    while await long_polls(http, srv) < n:
        assert time.monotonic() < deadline, f"{n} long-polls never waited at once"
        await asyncio.sleep(0.02)
