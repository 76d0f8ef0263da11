"""Error codes, close codes and the one exception root of the hub.

Every failure a client can see is a :class:`RoomlogError` carrying an
:class:`ErrorCode`. Transports turn it into their own shape: an ``error`` frame
on a WebSocket, a JSON body with a fitting HTTP status over HTTP. The tree::

    RoomlogError                 code, message, retry_after
     ├── ProtocolError            the client sent something malformed (BAD_FRAME ...)
     ├── Unavailable              a dependency (database, bus) failed; retry later
     └── Refused                  the database refused a write for what it holds; a
                                  retry cannot succeed (the write path isolates the item)

WebSocket close codes are in :class:`CloseCode`; each says whether a client
should reconnect (and resume) or stop until something changes (a new token).
``docs/protocol.md`` documents both lists; keep the three in step.
"""

from __future__ import annotations

import enum
from typing import Any

__all__ = [
    "HTTP_STATUS",
    "CloseCode",
    "ErrorCode",
    "ProtocolError",
    "Refused",
    "RoomlogError",
    "Unavailable",
    "describe",
]


class ErrorCode(enum.StrEnum):
    """Codes in ``error`` frames and HTTP error bodies. Fixed and documented."""

    BAD_FRAME = "BAD_FRAME"  # malformed JSON/msgpack, unknown type, wrong field type
    UNAUTHORIZED = "UNAUTHORIZED"  # missing, expired or forged token; frame before connect
    FORBIDDEN = "FORBIDDEN"  # authenticated, but this principal may not do this
    BANNED = "BANNED"  # the user, this role of it, or this token is banned by an admin
    NOT_FOUND = "NOT_FOUND"  # no such room / resource
    INVALID_ROOM = "INVALID_ROOM"  # room name not `kind:id`, or an unknown kind
    RATE_LIMITED = "RATE_LIMITED"  # too fast; retry after `retry_after` seconds
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"  # a per-connection cap (e.g. subscriptions) is reached
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"  # data or frame above the configured limit
    CONFLICT = "CONFLICT"  # the state moved on (e.g. an `expected_seq` no longer holds)
    UNAVAILABLE = "UNAVAILABLE"  # database or bus down; retry with the same id
    INTERNAL = "INTERNAL"  # a bug; logged with a traceback on the server
    # Domain rooms (commands)
    INVALID_ARGS = "INVALID_ARGS"  # a command's arguments are missing or ill-typed
    UNKNOWN_COMMAND = "UNKNOWN_COMMAND"  # the room's kind has no such command
    INVALID_TRANSITION = "INVALID_TRANSITION"  # not allowed from the current status
    DUPLICATE_REQUEST = "DUPLICATE_REQUEST"  # queue: this guest already requested this song
    CAPACITY_EXCEEDED = "CAPACITY_EXCEEDED"  # queue: the hourly cap is reached
    TOO_MANY_ACTIVE = "TOO_MANY_ACTIVE"  # queue: the guest has too many active requests
    QUEUE_CLOSED = "QUEUE_CLOSED"  # queue: the DJ closed the queue
    PAYMENT_REQUIRED = "PAYMENT_REQUIRED"  # queue: a paid room; send a payment reference
    PAYMENT_DECLINED = "PAYMENT_DECLINED"  # queue: the backend did not verify the payment
    PAYMENT_ALREADY_USED = "PAYMENT_ALREADY_USED"  # queue: this reference funds another one
    # Command hooks (docs/backends.md)
    DENIED = "DENIED"  # the operator's backend refused the command (details.code says why)


HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.BAD_FRAME: 400,
    ErrorCode.INVALID_ROOM: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.BANNED: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.LIMIT_EXCEEDED: 429,
    ErrorCode.INTERNAL: 500,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.INVALID_ARGS: 400,
    ErrorCode.UNKNOWN_COMMAND: 400,
    ErrorCode.INVALID_TRANSITION: 409,
    ErrorCode.DUPLICATE_REQUEST: 409,
    ErrorCode.CAPACITY_EXCEEDED: 429,
    ErrorCode.TOO_MANY_ACTIVE: 409,
    ErrorCode.QUEUE_CLOSED: 409,
    ErrorCode.PAYMENT_REQUIRED: 402,
    ErrorCode.PAYMENT_DECLINED: 402,
    ErrorCode.PAYMENT_ALREADY_USED: 409,
    ErrorCode.DENIED: 403,
}


class CloseCode(enum.IntEnum):
    """WebSocket close codes the server uses.

    ``reconnects`` tells a client what to do: True means reconnect with backoff
    and resume every room from its last seq; False means stop and fix the cause
    first (get a new token, fix the client).
    """

    NORMAL = 1000  # the client asked to close
    GOING_AWAY = 1001  # server shutting down or draining: reconnect (elsewhere)
    MESSAGE_TOO_BIG = 1009  # a frame above max_frame_bytes (sent by the WS layer)
    INTERNAL = 1011  # server bug: reconnect with backoff
    SERVICE_RESTART = 1012  # the server process is restarting (sent by uvicorn): reconnect
    UNAUTHORIZED = 4001  # bad, expired or missing token, or no `connect` in time: stop
    PROTOCOL = 4002  # the client broke the protocol (too many bad frames): stop
    FORBIDDEN = 4003  # banned (BANNED) or disconnected by an admin: stop
    SLOW = 4008  # outbox overflowed, the client could not keep up: reconnect, resume
    LIMITED = 4029  # too many connections, or rate limits exceeded again and again: back off

    @property
    def reconnects(self) -> bool:
        return self in _RECONNECT


_RECONNECT = frozenset(
    {CloseCode.GOING_AWAY, CloseCode.INTERNAL, CloseCode.SERVICE_RESTART, CloseCode.SLOW,
     CloseCode.LIMITED})


class RoomlogError(Exception):
    """A failure with a code a client can act on.

    ``retry_after`` (seconds) is set when trying again later can succeed.
    """

    def __init__(
        self, code: ErrorCode, message: str, *, retry_after: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.details = details  # structured facts for the client (e.g. an existing id)

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]


class ProtocolError(RoomlogError):
    """The client sent a frame the server cannot use."""

    def __init__(self, message: str, *, code: ErrorCode = ErrorCode.BAD_FRAME) -> None:
        super().__init__(code, message)


class Unavailable(RoomlogError):
    """A dependency failed; the same request (same id) can be retried."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(ErrorCode.UNAVAILABLE, message, retry_after=retry_after)


def describe(exc: BaseException) -> str:
    """An exception as one log line: its type and its first line. A timeout has no
    message of its own, and "failed ()" says nothing; "TimeoutError" does."""
    text = str(exc).split("\n")[0].strip()
    name = type(exc).__name__
    return f"{name}: {text}" if text else name
class Refused(RoomlogError):
    """The database refused a write for what it contains, not for being down (a
    value a column cannot hold). The transaction stored nothing and the same write
    will fail again: the write path tells the item that caused it from the others
    (``roomlog.publisher``), which it commits without it."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.BAD_FRAME, message)
