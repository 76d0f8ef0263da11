"""One WebSocket to the hub (the one module that imports websockets).

:func:`open_link` opens the socket with the subprotocol of the codec, sends
``connect`` with the token and waits for ``connected``: what it returns is an
authenticated link. It raises :class:`OpenFailed` saying why it could not:
``unreachable`` (no route to the host, no DNS: the network is down),
``network`` (no TCP connection, a timeout), ``refused`` (an HTTP status instead
of the WebSocket handshake: a proxy or a server that refuses WebSockets),
``auth`` (the token was refused) or ``closed`` (closed with a code before
``connected``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from roomlog_client.codec import Codec

__all__ = ["Link", "LinkClosed", "OpenFailed", "open_link"]

UNREACHABLE = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN})
MAX_MESSAGE = 64 * 1024 * 1024  # a coalesced backlog: up to 512 frames of up to 64 KiB data


class OpenFailed(Exception):
    def __init__(self, kind: str, detail: str, code: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.code = code
        self.retry_after = retry_after  # a saturated server's 503 says when to come back


class LinkClosed(Exception):
    """The WebSocket ended (its close code is ``Link.close_code``)."""


class Link:
    """An open, authenticated WebSocket: frames out (:meth:`post`, in order) and in
    (:meth:`recv`, flattened)."""

    def __init__(self, ws: ClientConnection, codec: Codec, token: str,
                 connected: dict[str, Any], early: list[dict[str, Any]]) -> None:
        self._ws = ws
        self.token = token  # the token that authenticated it (or its last refresh)
        self._codec = codec
        self.connected = connected  # the server's `connected` frame
        self.opened_at = time.monotonic()
        self._early = early  # frames that came with `connected`
        self._out: asyncio.Queue[str | bytes] = asyncio.Queue()
        self._writer = asyncio.get_running_loop().create_task(self._write())

    @property
    def close_code(self) -> int:
        """The close code received (1006 when the connection ended without one)."""
        code = self._ws.close_code
        return 1006 if code is None else code

    @property
    def close_reason(self) -> str:
        return self._ws.close_reason or ""

    def post(self, frame: dict[str, Any]) -> None:
        """Send ``frame`` after those posted before it. A dead link drops it silently:
        the client finds out from :meth:`recv` and sends again on the next link."""
        self._out.put_nowait(self._codec.encode(frame))

    async def _write(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await self._ws.send(await self._out.get())

    async def recv(self) -> list[dict[str, Any]]:
        """The next server frames; raises LinkClosed when the link ends, ValueError
        for a message that is not frames."""
        if self._early:
            early, self._early = self._early, []
            return early
        try:
            payload = await self._ws.recv()
        except ConnectionClosed:
            raise LinkClosed(self.close_code) from None
        return self._codec.decode(payload)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self._writer.cancel()
        try:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await self._ws.close(code, reason)
        finally:
            self.abort()

    def abort(self) -> None:
        """Drop the TCP connection at once (a link found dead)."""
        self._writer.cancel()
        self._ws.transport.abort()


def _seconds(value: str | None) -> float | None:
    """A Retry-After in whole seconds; None if absent or not a number."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


async def open_link(url: str, codec: Codec, token: str, *, within: float) -> Link:
    try:
        ws = await connect(url, subprotocols=[Subprotocol(codec.subprotocol)],
                           open_timeout=within, ping_interval=None, close_timeout=2.0,
                           max_size=MAX_MESSAGE)
    except InvalidStatus as exc:
        status = exc.response.status_code
        if status == 503:  # saturated: come back after Retry-After, nothing is wrong
            raise OpenFailed("busy", "HTTP 503", status,
                             _seconds(exc.response.headers.get("Retry-After"))) from None
        raise OpenFailed("refused", f"HTTP {status}", status) from None
    except OSError as exc:
        kind = "unreachable" if isinstance(exc, socket.gaierror) or exc.errno in UNREACHABLE \
            else "network"
        raise OpenFailed(kind, str(exc) or type(exc).__name__) from None
    except (TimeoutError, InvalidHandshake) as exc:
        raise OpenFailed("network", str(exc) or type(exc).__name__) from None
    try:
        await ws.send(codec.encode({"type": "connect", "token": token, "id": "connect"}))
        async with asyncio.timeout(within):
            while True:
                frames = codec.decode(await ws.recv())
                for i, frame in enumerate(frames):
                    if frame["type"] == "connected":
                        return Link(ws, codec, token, frame, frames[i + 1:])
                    if frame["type"] == "error" and frame.get("code") == "UNAUTHORIZED":
                        raise OpenFailed("auth", str(frame.get("message", "")), 4001)
    except ConnectionClosed:
        code = ws.close_code or 1006
        raise OpenFailed("auth" if code == 4001 else "closed", ws.close_reason or "",
                         code) from None
    except TimeoutError:
        ws.transport.abort()
        raise OpenFailed("network", "no 'connected' in time") from None
    except BaseException:
        ws.transport.abort()
        raise
