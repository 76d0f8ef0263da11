"""The Outbound port over httpx: the one module that imports it.

Address policy: unless ``allow_private``, a URL whose host resolves to a loopback,
link-local, private, multicast, reserved or unspecified address is refused, so an
admin API that stores URLs is no way into the operator's network. The host is
resolved once per request and the request goes to the address that was checked
(the ``Host`` header and TLS name stay the URL's), so a DNS answer that changes
between the check and the connection (rebinding) cannot slip past it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

import httpx

from roomlog.outbound import Failure, OutboundError, Reply, checked_address

__all__ = ["HttpxOutbound"]


class HttpxOutbound:
    def __init__(self, *, allow_private: bool = False, max_connections: int = 100,
                 user_agent: str = "roomlog") -> None:
        self._allow_private = allow_private
        self._user_agent = user_agent
        self._client = httpx.AsyncClient(
            follow_redirects=False, trust_env=False,
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=max_connections))

    async def _target(self, url: str) -> tuple[str, dict[str, str], dict[str, object]]:
        """The URL to connect to (the checked address), extra headers, extensions."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise OutboundError("protocol", f"not an http(s) URL: {url[:200]!r}")
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = await checked_address(host, port, allow_private=self._allow_private)
        literal = f"[{address}]" if ":" in address else address
        netloc = f"{literal}:{port}"
        pinned = parts._replace(netloc=netloc).geturl()
        host_header = parts.netloc.rsplit("@", 1)[-1]
        extensions: dict[str, object] = {}
        if parts.scheme == "https":
            extensions["sni_hostname"] = host
        return pinned, {"host": host_header}, extensions

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], *,
                   within: float, max_body: int = 65_536) -> Reply:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(within):
                target, extra, extensions = await self._target(url)
                request = self._client.build_request(
                    "POST", target, content=body,
                    headers={"user-agent": self._user_agent, **headers, **extra},
                    extensions=extensions)
                response = await self._client.send(request, stream=True)
                try:
                    chunks, size = [], 0
                    async for chunk in response.aiter_raw():
                        chunks.append(chunk)
                        size += len(chunk)
                        if size >= max_body:
                            break
                finally:
                    await response.aclose()
        except TimeoutError:
            raise OutboundError("timeout", f"no answer within {within}s",
                                elapsed=time.perf_counter() - started) from None
        except httpx.HTTPError as exc:
            kind: Failure = "connect" if isinstance(exc, httpx.TransportError) else "protocol"
            raise OutboundError(kind, f"{type(exc).__name__}: {exc}"[:300],
                                elapsed=time.perf_counter() - started) from None
        return Reply(response.status_code, time.perf_counter() - started,
                     {k.lower(): v for k, v in response.headers.items()},
                     b"".join(chunks)[:max_body])

    async def close(self) -> None:
        await self._client.aclose()
