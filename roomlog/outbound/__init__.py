"""The Outbound port: HTTP requests the hub makes to backends (webhooks, hooks).

Contract every adapter keeps:

* ``post`` sends one request and returns the :class:`Reply` whatever its status (a
  4xx or 5xx is an answer, not an error); the body read is capped at ``max_body``.
* It raises :class:`OutboundError` when no answer came: the address was refused by
  policy (loopback, link-local or private, unless the adapter allows them), the
  connection failed, or ``within`` (seconds, the whole request) passed. ``kind``
  says which, for metrics and for the attempt log operators read.
* Redirects are not followed: a receiver answers where it was asked.
* ``close`` releases pooled connections; ``post`` is not called after it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from roomlog.outbound.policy import blocked_address

__all__ = ["Failure", "Outbound", "OutboundError", "Reply", "checked_address"]

Failure = Literal["refused_address", "connect", "timeout", "protocol"]


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    elapsed: float  # seconds from sending to the end of the (capped) body
    headers: Mapping[str, str] = field(default_factory=dict)  # lowercase names
    body: bytes = b""


class OutboundError(Exception):
    """No answer: ``kind`` is refused_address, connect, timeout or protocol."""

    def __init__(self, kind: Failure, message: str, *, elapsed: float = 0.0) -> None:
        super().__init__(message)
        self.kind: Failure = kind
        self.message = message
        self.elapsed = elapsed


class Outbound(Protocol):
    async def post(self, url: str, body: bytes, headers: Mapping[str, str], *,
                   within: float, max_body: int = 65_536) -> Reply: ...

    async def close(self) -> None: ...


async def checked_address(host: str, port: int, *, allow_private: bool) -> str:
    """The address to connect to for ``host``: resolved now (DNS may change between two
    connections) and, unless ``allow_private``, refused when any address it resolves to
    is one the policy blocks (:func:`roomlog.outbound.policy.blocked_address`).
    Both adapters connect to what this returns, so the check and the connection agree."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port,
                                                             type=socket.SOCK_STREAM)
    except OSError as exc:
        raise OutboundError("connect", f"cannot resolve {host}: {exc}") from None
    addresses = [str(info[4][0]) for info in infos]
    if not allow_private:
        bad = [a for a in addresses if blocked_address(a)]
        if bad:
            raise OutboundError("refused_address",
                                f"{host} resolves to a non-public address ({bad[0]})")
    return addresses[0]
