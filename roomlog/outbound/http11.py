"""The Outbound port over plain asyncio streams: a lean HTTP/1.1 client for webhooks
and command hooks.

Why our own client: webhook delivery posts one small request per message, and
httpx's connection pool costs about a millisecond of CPU per request (its pool
scans every connection, and asks which async library runs at each request):
measured with loadtest/webhooks.py, it capped one instance at a few hundred
requests/s. This adapter does what webhooks need and nothing more: ``POST`` with
a body, keep-alive connections pooled per origin, a response read with its body
capped (``content-length``, chunked, or until close), TLS through :mod:`ssl`.

Address policy (``roomlog.outbound.policy``): unless ``allow_private``, a host
resolving to a loopback, link-local, private, multicast, reserved or unspecified
address is refused; a new connection goes to the address that was checked (the
``Host`` header and the TLS name stay the URL's), so DNS rebinding cannot slip
past the check. Pooled connections were made to checked addresses. Redirects are
answers like any other (not followed).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

from roomlog.outbound import OutboundError, Reply, checked_address

__all__ = ["Http11Outbound"]

_HEAD_LIMIT = 65_536  # bytes of a status line and headers
_Origin = tuple[str, str, int]  # scheme, host, port
_OURS = frozenset({"host", "content-length", "connection"})  # headers this adapter writes
_TARGETS_KEPT = 64  # URLs whose parsing is remembered (an endpoint's client has one)


class _Conn:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()


class _Stale(Exception):
    """A pooled connection was closed by the other side before it answered."""


class Http11Outbound:
    def __init__(self, *, allow_private: bool = False, max_connections: int = 100,
                 user_agent: str = "roomlog") -> None:
        self._allow_private = allow_private
        self._user_agent = user_agent
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[_Origin, list[_Conn]] = {}
        self._targets: dict[str, tuple[_Origin, str]] = {}
        self._tls: ssl.SSLContext | None = None
        self._closed = False

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], *,
                   within: float, max_body: int = 65_536) -> Reply:
        started = time.perf_counter()
        target = self._targets.get(url)
        if target is None:
            target = self._target(url)
        origin, head = target
        request = self._request(head, body, headers)
        try:
            async with asyncio.timeout(within), self._slots:
                pooled = self._idle.get(origin)
                if pooled:
                    try:
                        return await self._exchange(pooled.pop(), origin, request, max_body,
                                                    started, reused=True)
                    except _Stale:
                        pass  # closed while idle: once more on a new connection
                conn = await self._connect(origin)
                return await self._exchange(conn, origin, request, max_body, started,
                                            reused=False)
        except TimeoutError:
            raise OutboundError("timeout", f"no answer within {within}s",
                                elapsed=time.perf_counter() - started) from None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                _Stale) as exc:
            raise OutboundError("connect", f"{type(exc).__name__}: {exc}"[:300],
                                elapsed=time.perf_counter() - started) from None
        except ValueError as exc:  # a malformed answer
            raise OutboundError("protocol", f"bad HTTP answer: {exc}"[:300],
                                elapsed=time.perf_counter() - started) from None

    def _target(self, url: str) -> tuple[_Origin, str]:
        """Where a URL's requests go and their first lines, parsed once per URL (a
        webhook posts to the same one thousands of times a second)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise OutboundError("protocol", f"not an http(s) URL: {url[:200]!r}")
        origin = (parts.scheme, parts.hostname, parts.port or
                  (443 if parts.scheme == "https" else 80))
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.netloc.rsplit("@", 1)[-1]
        head = f"POST {path} HTTP/1.1\r\nhost: {host}\r\nuser-agent: {self._user_agent}\r\n"
        if len(self._targets) >= _TARGETS_KEPT:
            self._targets.clear()
        self._targets[url] = (origin, head)
        return origin, head

    @staticmethod
    def _request(head: str, body: bytes, headers: Mapping[str, str]) -> bytes:
        lines = [f"{head}content-length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()
                  if name.lower() not in _OURS]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    async def _connect(self, origin: _Origin) -> _Conn:
        scheme, host, port = origin
        address = await checked_address(host, port, allow_private=self._allow_private)
        tls = None
        if scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        reader, writer = await asyncio.open_connection(
            address, port, ssl=tls, server_hostname=host if tls else None, limit=_HEAD_LIMIT)
        return _Conn(reader, writer)

    async def _exchange(self, conn: _Conn, origin: _Origin, request: bytes, max_body: int,
                        started: float, *, reused: bool) -> Reply:
        keep = False
        try:
            conn.writer.write(request)
            try:
                head = await conn.reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                if reused and not getattr(exc, "partial", b""):
                    raise _Stale(str(exc)) from None
                raise
            status, headers = _parse_head(head)
            body, keep = await _read_body(conn.reader, status, headers, max_body)
            return Reply(status, time.perf_counter() - started, headers, body)
        finally:
            if keep and not self._closed:
                self._idle.setdefault(origin, []).append(conn)
            else:
                conn.close()

    async def close(self) -> None:
        self._closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    if not version.startswith("HTTP/1."):
        raise ValueError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    status = int(rest[:3])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if version == "HTTP/1.0" and headers.get("connection", "").lower() != "keep-alive":
        headers.setdefault("connection", "close")
    return status, headers


async def _read_body(reader: asyncio.StreamReader, status: int, headers: dict[str, str],
                     max_body: int) -> tuple[bytes, bool]:
    """The body (at most ``max_body`` bytes) and whether the connection can be reused."""
    reusable = headers.get("connection", "").lower() != "close"
    if status in (204, 304) or 100 <= status < 200:
        return b"", reusable
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks: list[bytes] = []
        size = 0
        while True:
            line = await reader.readuntil(b"\r\n")
            length = int(line.split(b";", 1)[0].strip(), 16)
            if length == 0:
                await _trailers(reader)
                return b"".join(chunks), reusable
            if size + length > max_body:
                chunks.append(await reader.read(max_body - size))
                return b"".join(chunks)[:max_body], False
            chunks.append(await reader.readexactly(length))
            await reader.readexactly(2)
            size += length
    length_header = headers.get("content-length")
    if length_header is not None:
        length = int(length_header)
        if length > max_body:
            return await reader.readexactly(max_body), False
        return await reader.readexactly(length), reusable
    rest: list[bytes] = []  # no length: the body ends when the connection does
    size = 0
    while size < max_body:
        chunk = await reader.read(max_body - size)
        if not chunk:
            break
        rest.append(chunk)
        size += len(chunk)
    return b"".join(rest), False


async def _trailers(reader: asyncio.StreamReader) -> None:
    while (await reader.readuntil(b"\r\n")) != b"\r\n":
        pass
