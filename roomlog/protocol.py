"""Protocol v1: frames in and out, validation, JSON and msgpack. No I/O.

Client frames are dicts with a ``type``; :func:`parse_frame` turns one into a
typed frame or raises :class:`~roomlog.errors.ProtocolError`. What a client sends
is checked here against everything the database and the encoder would refuse
later, where it would fail a whole batch of other clients' writes: ids and user
ids are text a SQL column stores (:func:`storable_text`), and ``data`` and command
``args`` are JSON values (no NaN, no infinity, no byte strings, string keys) no
deeper than ``max_depth`` (:func:`json_problem`). Server frames are
built here and encoded once per :class:`Format`; a backlog of encoded frames is
joined into one wire payload by :func:`batch` (a JSON array or a msgpack
array, a run of events for SSE). ``docs/protocol.md`` is the reference.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import msgpack
import orjson

from roomlog.errors import ErrorCode, ProtocolError, RoomlogError
from roomlog.identity import Principal, Role
from roomlog.rooms import RoomName, parse_room

__all__ = [
    "SUBPROTOCOLS",
    "ClientFrame",
    "CommandFrame",
    "Connect",
    "Format",
    "Lens",
    "Message",
    "Ping",
    "PresenceQuery",
    "Publish",
    "Since",
    "Subscribe",
    "Unsubscribe",
    "batch",
    "decode",
    "encode",
    "encode_data",
    "error_frame",
    "json_problem",
    "parse_command",
    "parse_frame",
    "parse_id",
    "storable_text",
]

MAX_ID_LENGTH = 128
MAX_USER_LENGTH = 200  # a user id (a token's ``sub``, an ``on_behalf_of`` user)
# Roles a service may act as (``on_behalf_of``): the people of the rooms, never an
# operator (a service already acts as one).
ON_BEHALF_ROLES = frozenset({Role.GUEST, Role.DJ, Role.CUSTOMER, Role.TECHNICIAN})
MAX_DEPTH = 64  # default nesting of data and args (setting max_nesting_depth)

# NUL: PostgreSQL's text refuses it. A lone surrogate: no UTF-8 encodes it.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

# What one audience of a room sees of a message's data: (audience, redact), where
# redact(data, audience) gives the data, a copy without hidden fields, or None.
Lens = tuple[str, Callable[[dict[str, Any], str], "dict[str, Any] | None"]]


class Format(enum.Enum):
    """A wire format. WebSocket clients pick JSON or msgpack by subprotocol."""

    JSON = "json"
    MSGPACK = "msgpack"
    SSE = "sse"  # JSON frames as Server-Sent Events

    # Members are singletons, equal only to themselves: hash them as objects. Enum's
    # own __hash__ is Python code (the name's hash), and every cached encoding of a
    # message is looked up by format (three times per replayed message).
    __hash__ = object.__hash__


SUBPROTOCOLS = {"roomlog.v1.json": Format.JSON, "roomlog.v1.msgpack": Format.MSGPACK}


# ---------------------------------------------------------------------------
# Messages: stored, sequenced, encoded once per format


@dataclass(slots=True, eq=False)
class Message:
    """One committed message of a room's log.

    ``raw`` is the data as JSON text, exactly as stored; the JSON frame embeds
    it without decoding. Encoded frames are cached, so fan-out to any number of
    subscribers encodes each message once per format, and once per format and
    audience in rooms whose readers see different things (:meth:`encoded_for`).
    """

    room: str
    seq: int
    epoch: str
    ts: int  # commit time, milliseconds since the Unix epoch
    by: str
    raw: bytes
    _wire: dict[Any, bytes] = field(default_factory=dict, repr=False)

    @property
    def data(self) -> Any:
        return orjson.loads(self.raw)

    def frame(self) -> dict[str, Any]:
        return {
            "type": "message",
            "room": self.room,
            "seq": self.seq,
            "epoch": self.epoch,
            "ts": self.ts,
            "by": self.by,
            "data": self.data,
        }

    def encoded(self, fmt: Format) -> bytes:
        wire = self._wire.get(fmt)
        if wire is None:
            wire = self._wire[fmt] = self._encode(fmt)
        return wire

    def encoded_for(self, fmt: Format, lens: Lens) -> bytes:
        """The frame a reader of ``lens``'s audience gets: the message as is, with
        fields removed, or a ``skip`` placeholder that only advances the position
        (what may not be seen never looks like a lost message)."""
        audience, redact = lens
        key = (fmt, audience)
        wire = self._wire.get(key)
        if wire is None:
            data = self.data
            seen = redact(data, audience)
            if seen is None:
                wire = self._skip(fmt)
            elif seen == data:
                wire = self.encoded(fmt)
            else:
                wire = Message(self.room, self.seq, self.epoch, self.ts, self.by,
                               orjson.dumps(seen)).encoded(fmt)
            self._wire[key] = wire
        return wire

    def _skip(self, fmt: Format) -> bytes:
        frame = {"type": "skip", "room": self.room, "seq": self.seq, "epoch": self.epoch}
        if fmt is Format.SSE:
            return b"id: %d\nevent: skip\ndata: %s\n\n" % (self.seq, orjson.dumps(frame))
        return _packb(frame) if fmt is Format.MSGPACK else orjson.dumps(frame)

    def _encode(self, fmt: Format) -> bytes:
        if fmt is Format.MSGPACK:
            return _packb(self.frame())
        body = orjson.dumps(
            {
                "type": "message",
                "room": self.room,
                "seq": self.seq,
                "epoch": self.epoch,
                "ts": self.ts,
                "by": self.by,
                "data": orjson.Fragment(self.raw),
            }
        )
        if fmt is Format.SSE:
            return b"id: %d\nevent: message\ndata: %s\n\n" % (self.seq, body)
        return body


def storable_text(value: str) -> bool:
    """Whether a text column of every database we run on stores ``value`` (no NUL,
    no lone surrogate)."""
    return _UNSTORABLE.search(value) is None


def json_problem(value: Any, max_depth: int) -> str | None:
    """What keeps ``value`` from being a JSON value at most ``max_depth`` arrays or
    objects deep, or None. (msgpack carries NaN, infinity, byte strings, integer
    keys and extension types; orjson would write NaN and infinity as ``null``.)"""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= max_depth:
                return f"nested deeper than {max_depth} levels"
            if isinstance(item, dict):
                if not all(isinstance(key, str) for key in item):
                    return "object keys must be strings"
                stack += [(v, depth + 1) for v in item.values()]
            else:
                stack += [(v, depth + 1) for v in item]
        elif isinstance(item, float):
            if not math.isfinite(item):
                return "NaN and infinity are not JSON"
        elif not (item is None or isinstance(item, str | int)):  # bool is an int
            return f"{type(item).__name__} is not a JSON value"
    return None


def encode_data(data: Any, max_bytes: int, *, max_depth: int = MAX_DEPTH) -> bytes:
    """Validate application data and return it as the JSON text we store."""
    problem = json_problem(data, max_depth)
    if problem is not None:
        raise ProtocolError(f"data must be JSON-compatible: {problem}")
    try:
        raw = orjson.dumps(data)
    except TypeError as exc:  # a lone surrogate, an integer beyond 64 bits
        raise ProtocolError(f"data must be JSON-compatible: {exc}") from None
    if len(raw) > max_bytes:
        raise RoomlogError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"data is {len(raw)} bytes encoded; the limit is {max_bytes}",
        )
    return raw


# ---------------------------------------------------------------------------
# Codecs


def _packb(obj: Any) -> bytes:
    return cast(bytes, msgpack.packb(obj, use_bin_type=True))


def decode(fmt: Format, payload: str | bytes) -> Any:
    """Decode one inbound WebSocket frame; BAD_FRAME if it is not valid."""
    try:
        if fmt is Format.MSGPACK:
            if isinstance(payload, str):
                raise ProtocolError("the msgpack subprotocol takes binary frames")
            return msgpack.unpackb(payload, raw=False, strict_map_key=True)
        return orjson.loads(payload)
    except ProtocolError:
        raise
    except Exception as exc:  # both libraries raise several unrelated types
        raise ProtocolError(f"cannot decode {fmt.value} frame: {exc}") from None


def encode(fmt: Format, frame: dict[str, Any]) -> bytes:
    """Encode one server frame (not a message: those use Message.encoded)."""
    if fmt is Format.MSGPACK:
        return _packb(frame)
    body = orjson.dumps(frame)
    if fmt is Format.SSE:
        return b"event: %s\ndata: %s\n\n" % (frame["type"].encode(), body)
    return body


def batch(fmt: Format, items: Sequence[bytes]) -> bytes:
    """Join encoded frames into one wire payload.

    One item goes out as itself; several become one JSON or msgpack array, so a
    client must accept both a frame and an array of frames. SSE events are
    simply concatenated.
    """
    if len(items) == 1:
        return items[0]  # the shared encoded bytes themselves: no copy per subscriber
    if fmt is Format.SSE:
        return b"".join(items)
    if fmt is Format.MSGPACK:
        n = len(items)
        if n < 16:
            head = bytes([0x90 | n])
        elif n < 65536:
            head = b"\xdc" + n.to_bytes(2, "big")
        else:
            head = b"\xdd" + n.to_bytes(4, "big")
        return head + b"".join(items)
    return b"[" + b",".join(items) + b"]"


# ---------------------------------------------------------------------------
# Client frames


@dataclass(frozen=True, slots=True)
class Since:
    """A client's position: the last seq it has of the log named ``epoch``.

    ``epoch`` None (HTTP clients that do not send one) trusts the seq as is.
    """

    epoch: str | None
    seq: int


@dataclass(frozen=True, slots=True)
class Connect:
    token: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Subscribe:
    room: RoomName
    since: Since | None = None
    id: str | None = None
    presence: bool = False  # also send presence_diff frames of the room


@dataclass(frozen=True, slots=True)
class PresenceQuery:
    """Who is in the room now (answered with a ``presence`` frame)."""

    room: RoomName
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    room: RoomName
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Publish:
    room: RoomName
    data: Any
    id: str


@dataclass(frozen=True, slots=True)
class Ping:
    id: str | None = None


@dataclass(frozen=True, slots=True)
class CommandFrame:
    """A command to a domain room; ``expected_seq`` fails it with CONFLICT if the
    room has moved past that seq."""

    room: RoomName
    name: str
    args: dict[str, Any]
    id: str
    expected_seq: int | None = None
    on_behalf_of: Principal | None = None  # a service runs it as this user (the rules apply)


ClientFrame = Connect | Subscribe | Unsubscribe | Publish | Ping | CommandFrame | PresenceQuery


def _usable_id(value: Any) -> bool:
    return (isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH
            and storable_text(value))


def frame_id(obj: Any) -> str | None:
    """The client's id of a frame, if it has a usable one (to tag an error)."""
    if isinstance(obj, dict):
        value = obj.get("id")
        if _usable_id(value):
            assert isinstance(value, str)
            return value
    return None


def parse_id(value: Any) -> str:
    """A client's id (of a publish, a command, any frame): BAD_FRAME unless usable."""
    if not _usable_id(value):
        raise ProtocolError(f"'id' must be a string of 1 to {MAX_ID_LENGTH} characters, "
                            "without NUL")
    assert isinstance(value, str)
    return value


def parse_frame(obj: Any, *, max_depth: int = MAX_DEPTH) -> ClientFrame:
    """Validate a decoded client frame. Raises ProtocolError, INVALID_ROOM, or
    INVALID_ARGS (a command's ``args``, which may be at most ``max_depth`` deep)."""
    if not isinstance(obj, dict):
        raise ProtocolError("a frame must be an object with a 'type'")
    kind = obj.get("type")
    if kind == "command":
        return parse_command(obj, parse_room(obj.get("room")), max_depth=max_depth)
    parser = _PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        raise ProtocolError(f"unknown frame type {str(kind)[:40]!r}; expected one of "
                            + ", ".join(sorted([*_PARSERS, "command"])))
    return parser(obj)


def _id(obj: dict[str, Any], *, required: bool = False) -> str | None:
    value = obj.get("id")
    if value is None and not required:
        return None
    return parse_id(value)


def _since(value: Any) -> Since | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ProtocolError("'since' must be an object {epoch, seq}")
    epoch, seq = value.get("epoch"), value.get("seq")
    if not isinstance(epoch, str) or not isinstance(seq, int) or isinstance(seq, bool):
        raise ProtocolError("'since' needs a string 'epoch' and an integer 'seq'")
    if seq < 0:
        raise ProtocolError("'since.seq' must not be negative")
    return Since(epoch, seq)


def _connect(obj: dict[str, Any]) -> Connect:
    token = obj.get("token")
    if not isinstance(token, str) or not token:
        raise ProtocolError("'connect' needs a 'token' string")
    return Connect(token, _id(obj))


def _subscribe(obj: dict[str, Any]) -> Subscribe:
    presence = obj.get("presence", False)
    if not isinstance(presence, bool):
        raise ProtocolError("'presence' must be true or false")
    return Subscribe(parse_room(obj.get("room")), _since(obj.get("since")), _id(obj), presence)


def _presence(obj: dict[str, Any]) -> PresenceQuery:
    return PresenceQuery(parse_room(obj.get("room")), _id(obj))


def _unsubscribe(obj: dict[str, Any]) -> Unsubscribe:
    return Unsubscribe(parse_room(obj.get("room")), _id(obj))


def _publish(obj: dict[str, Any]) -> Publish:
    if "data" not in obj:
        raise ProtocolError("'publish' needs 'data'")
    ident = _id(obj, required=True)
    assert ident is not None
    return Publish(parse_room(obj.get("room")), obj["data"], ident)


def _ping(obj: dict[str, Any]) -> Ping:
    return Ping(_id(obj))


def parse_command(obj: dict[str, Any], room: RoomName, *,
                  max_depth: int = MAX_DEPTH) -> CommandFrame:
    """The command part of a frame or an HTTP body (``name``, ``args``, ``id``).
    ``args`` must be a JSON object at most ``max_depth`` deep (INVALID_ARGS): what
    the domain stores of it must encode, in its events and its state."""
    name, args = obj.get("name"), obj.get("args", {})
    if not isinstance(name, str) or not 0 < len(name) <= 64:
        raise ProtocolError("'name' must be the command's name, e.g. 'request.submit'")
    if not isinstance(args, dict):
        raise RoomlogError(ErrorCode.INVALID_ARGS, "'args' must be an object")
    problem = json_problem(args, max_depth)
    if problem is None:
        try:
            orjson.dumps(args)
        except TypeError as exc:  # a lone surrogate, an integer beyond 64 bits
            problem = str(exc)
    if problem is not None:
        raise RoomlogError(ErrorCode.INVALID_ARGS, f"'args' must be JSON: {problem}")
    expected = obj.get("expected_seq")
    if expected is not None and (not isinstance(expected, int) or isinstance(expected, bool)
                                 or expected < 0):
        raise ProtocolError("'expected_seq' must be a non-negative integer")
    ident = _id(obj, required=True)
    assert ident is not None
    on_behalf = obj.get("on_behalf_of")
    acting = None if on_behalf is None else _on_behalf(on_behalf)
    return CommandFrame(room, name, args, ident, expected, acting)


def _on_behalf(value: Any) -> Principal:
    """``on_behalf_of: {"user", "role"?}`` (role: guest by default)."""
    roles = ", ".join(sorted(ON_BEHALF_ROLES))
    if not isinstance(value, dict):
        raise ProtocolError(f"'on_behalf_of' must be an object {{user, role}} (role: {roles})")
    user, role = value.get("user"), value.get("role", Role.GUEST.value)
    if (not isinstance(user, str) or not 0 < len(user) <= MAX_USER_LENGTH
            or not storable_text(user)):
        raise ProtocolError(f"'on_behalf_of.user' must be a string of 1 to {MAX_USER_LENGTH} "
                            "characters (no NUL)")
    if role not in {r.value for r in ON_BEHALF_ROLES}:
        raise ProtocolError(f"'on_behalf_of.role' must be one of {roles}")
    return Principal(user, Role(role))


_PARSERS: dict[str, Callable[[dict[str, Any]], ClientFrame]] = {
    "connect": _connect,
    "subscribe": _subscribe,
    "unsubscribe": _unsubscribe,
    "publish": _publish,
    "ping": _ping,
    "presence": _presence,
}  # "command" too (parse_command: it takes the depth limit)


# ---------------------------------------------------------------------------
# Server frames (messages aside)


def error_frame(err: RoomlogError, ident: str | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "code": err.code.value, "message": err.message}
    if ident is not None:
        frame["id"] = ident
    if err.retry_after is not None:
        frame["retry_after"] = err.retry_after
    if err.details:
        frame["details"] = err.details
    return frame
