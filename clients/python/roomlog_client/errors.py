"""Errors of the client and what the close codes mean.

The tree::

    ClientError                    root of everything this package raises
     ├── ServerError               the server refused something: code, message, details
     │    ├── CommandError         a publish or command was finally rejected: roll back
     │    └── SubscriptionError    a room cannot be (or is no longer) read
     ├── SubscriptionClosed       ``sub.next()`` on a subscription that was closed
     └── ClientStopped            the client stopped: closed by the application, or a
          │                        close code / HTTP status that means "stop"
          ├── ConnectFailed        ``fail_fast``: the first connection did not work
          └── ClientClosed         closed by the application (``close()``)

Close codes (``docs/protocol.md``, "Close codes"): :data:`STOP_CODES` mean stop
and fix the cause first; everything else (1001, 1006, 1011, 1012, 4008, 4029 and
unknown codes) means reconnect with backoff and resume. 4001 is special: the
client asks its token provider for a fresh token and tries once more.
"""

from __future__ import annotations

from typing import Any, Self

__all__ = [
    "RETRYABLE_CODES",
    "STOP_CODES",
    "ClientClosed",
    "ClientError",
    "ClientStopped",
    "CommandError",
    "ConnectFailed",
    "ServerError",
    "SubscriptionClosed",
    "SubscriptionError",
    "reconnects",
    "retry_delay",
]

UNAUTHORIZED_CLOSE = 4001
SLOW_CLOSE = 4008

#: Close codes after which the client stops: 4001 (when no fresh token helps), 4002
#: (the client broke the protocol), 4003 (banned or revoked), 1009 (a frame too big).
STOP_CODES = frozenset({4001, 4002, 4003, 1009})

#: Error codes after which a publish or command may be kept and sent again (same
#: id), as :func:`retry_delay` decides; every other code rejects it for good.
RETRYABLE_CODES = frozenset({"UNAVAILABLE", "RATE_LIMITED", "INTERNAL"})
MAX_RETRY_AFTER = 5.0  # a longer RATE_LIMITED wait is a room's rule: tell the user


def retry_delay(code: str, retry_after: float | None, attempts: int,
                *, max_retry_after: float = MAX_RETRY_AFTER) -> float | None:
    """Seconds after which a write rejected with ``code`` is sent again (same id), or
    None to reject it for good; ``attempts`` counts its rejections so far. The same
    policy as the browser client (clients/README.md):

    * UNAVAILABLE (database down, instance draining): up to 20 times, after
      ``retry_after`` or a growing wait (1, 2, 4 ... 10 s);
    * RATE_LIMITED: only a short wait (at most ``max_retry_after``), 5 times; a long
      one is a rule of the room (a guest's submit rate) the user should see;
    * INTERNAL: 3 times (1, 2, 4 s), then reported.
    """
    if code not in RETRYABLE_CODES:
        return None
    after = retry_after if retry_after is not None and retry_after >= 0 else None
    if code == "UNAVAILABLE":
        return (after if after is not None else min(10.0, 2.0 ** attempts)) \
            if attempts < 20 else None
    if code == "RATE_LIMITED":
        if after is None or after > max_retry_after or attempts >= 5:
            return None
        return after
    return 2.0 ** attempts if attempts < 3 else None


def reconnects(code: int) -> bool:
    """Whether a WebSocket closed with ``code`` should be reconnected (and resumed)."""
    return code not in STOP_CODES


class ClientError(Exception):
    """Root of the exceptions of ``roomlog_client``."""


class ServerError(ClientError):
    """The server answered with an error ``code`` (one of docs/protocol.md's error codes).

    ``details`` carries structured facts for some codes (``DUPLICATE_REQUEST`` names
    the existing request); ``retry_after`` is set when trying later can succeed.
    """

    def __init__(self, code: str, message: str, *, details: dict[str, Any] | None = None,
                 retry_after: float | None = None, room: str | None = None,
                 id: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details
        self.retry_after = retry_after
        self.room = room
        self.id = id

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> Self:
        """From an ``error`` frame or an HTTP error body's ``error`` object."""
        details = frame.get("details")
        retry = frame.get("retry_after")
        return cls(str(frame.get("code", "INTERNAL")), str(frame.get("message", "")),
                   details=details if isinstance(details, dict) else None,
                   retry_after=float(retry) if isinstance(retry, int | float) else None,
                   room=frame.get("room") if isinstance(frame.get("room"), str) else None,
                   id=frame.get("id") if isinstance(frame.get("id"), str) else None)

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE_CODES


class CommandError(ServerError):
    """A publish or command the server finally rejected (its ``code`` is not
    UNAVAILABLE or RATE_LIMITED). Nothing was applied: roll the UI back."""


class SubscriptionError(ServerError):
    """A subscription failed: the role may not read the room (``FORBIDDEN``), the name
    is wrong (``INVALID_ROOM``), or too many rooms (``LIMIT_EXCEEDED``)."""


class SubscriptionClosed(ClientError):
    """The subscription was closed (``close()``, ``unsubscribe``, the client closed):
    ``next()`` has nothing more to give. Iterating it simply ends instead."""

    def __init__(self, room: str) -> None:
        super().__init__(f"the subscription to {room} is closed")
        self.room = room


class ClientStopped(ClientError):
    """The client stopped and will not reconnect by itself.

    ``close_code`` is the WebSocket close code (or the HTTP status) that stopped it,
    ``None`` when the application closed the client.
    """

    def __init__(self, reason: str, close_code: int | None = None) -> None:
        super().__init__(reason if close_code is None else f"{close_code}: {reason}")
        self.reason = reason
        self.close_code = close_code


class ClientClosed(ClientStopped):
    """The application closed the client (``close()`` or leaving ``async with``)."""

    def __init__(self) -> None:
        super().__init__("the client was closed")


class ConnectFailed(ClientStopped):
    """``fail_fast=True`` and the first connection did not work: the URL is wrong (no
    server there, or no hub at that path), the network is down, or the hub refused the
    handshake. ``url`` is where it tried; ``close_code`` the HTTP status or close code
    when there was one. Nothing is retried: fix the cause and start a new client."""

    def __init__(self, url: str, reason: str, close_code: int | None = None) -> None:
        super().__init__(f"cannot connect to {url}: {reason}", close_code)
        self.url = url
