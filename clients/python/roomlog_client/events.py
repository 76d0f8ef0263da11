"""What the client hands to the application: positions, messages, resets, acks,
connection states. Plain immutable values; no I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Ack", "ConnectionState", "Event", "Message", "Pending", "Position", "Reset"]


class ConnectionState(enum.Enum):
    """The link to the hub, as the application may show it.

    * ``CONNECTING``: the first WebSocket attempt(s), before anything worked.
    * ``CONNECTED``: a WebSocket is open and authenticated.
    * ``RECONNECTING``: the link was lost (or never came up); waiting out the backoff
      or trying again.
    * ``POLLING``: WebSockets failed repeatedly; reading over HTTP long-polling and
      sending over HTTP POST, while probing the WebSocket in the background.
    * ``OFFLINE``: the network is down: the last attempts could not reach the host at
      all (no route, no DNS). The client probes ``/health/live`` and reconnects as
      soon as it answers (or when the application calls ``reconnect_now()``).
    * ``CLOSED``: not trying: not started yet, closed by the application, or stopped
      by a close code that means stop (``Client.stop_reason`` says which).
    """

    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    POLLING = "polling"
    OFFLINE = "offline"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Position:
    """A place in a room's log: the last message the client has (``seq`` in ``epoch``)."""

    epoch: str
    seq: int


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a room, delivered once and in seq order."""

    room: str
    epoch: str
    seq: int
    ts: int
    by: str
    data: Any

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> Message:
        return cls(frame["room"], frame["epoch"], frame["seq"], frame.get("ts", 0),
                   frame.get("by", ""), frame.get("data"))


@dataclass(frozen=True, slots=True)
class Reset:
    """The earlier view of the room is void: continue from ``(epoch, seq)``.

    ``reason`` is ``"epoch"`` (the room's log was recreated), ``"trimmed"`` (retention
    removed messages the client had not seen), or ``"initial"`` (the first state of a
    domain room subscribed without a position). ``state`` is a domain room's state at
    ``seq`` (replace the local state with it); ``None`` for rooms without state, whose
    messages still kept (``trimmed + 1`` onwards) follow when backfill is on.
    """

    room: str
    reason: str
    epoch: str
    seq: int
    trimmed: int = 0
    state: Any = None


Event = Message | Reset


@dataclass(frozen=True, slots=True)
class Ack:
    """A publish or command the server committed (``duplicate``: sent before, same id;
    nothing new was stored). ``seq`` is the last event's seq (``None`` when a command
    changed nothing), ``seqs`` every event a command caused, ``result`` its answer."""

    id: str
    room: str
    epoch: str | None
    seq: int | None
    duplicate: bool = False
    seqs: tuple[int, ...] = ()
    result: Any = None

    @classmethod
    def from_reply(cls, reply: dict[str, Any]) -> Ack:
        """From an ``ack`` frame or the JSON body of an HTTP publish or command."""
        seq = reply.get("seq")
        seqs = reply.get("seqs")
        return cls(str(reply.get("id", "")), str(reply.get("room", "")), reply.get("epoch"),
                   seq if isinstance(seq, int) else None, bool(reply.get("duplicate", False)),
                   tuple(seqs) if isinstance(seqs, list) else
                   ((seq,) if isinstance(seq, int) else ()),
                   reply.get("result"))


@dataclass(slots=True)
class Pending:
    """A publish or command in the outbox: sent (again) until answered, always with
    its ``id``. ``kind`` is ``"publish"`` (``body``: ``{"data"}``) or ``"command"``
    (``body``: ``{"name", "args", "expected_seq"?}``)."""

    id: str
    kind: str
    room: str
    body: dict[str, Any]
    not_before: float = 0.0  # monotonic time before which it is not sent again
    inflight: bool = False  # sent on the current WebSocket, no answer yet
    attempts: int = field(default=0)

    def frame(self) -> dict[str, Any]:
        """The WebSocket frame that sends it."""
        return {"type": self.kind, "room": self.room, "id": self.id, **self.body}

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "room": self.room, "body": self.body}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Pending:
        return cls(str(obj["id"]), str(obj["kind"]), str(obj["room"]), dict(obj["body"]))
