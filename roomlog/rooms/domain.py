"""The shape of a domain room: state + command + actor + now -> events. Pure.

A domain room (``queue:``, later ``repair:``) is the fold of its log. The
server's command path (``roomlog.commands``) does, under the room's lock::

    decision = domain.decide(state, command, actor, now_ms)   # or raises RoomlogError
    for event in decision.events:                             # seq = head + 1, ...
        notices += domain.apply(state, event, Meta(actor.user, seq, now_ms))
    store events (and notices in each user's ``user:{id}`` room), commit

Rules for implementers:

* ``decide`` never mutates ``state``. It raises :class:`~roomlog.errors.RoomlogError`
  with a domain code to reject (nothing is stored then), and returns every event
  the command causes plus a ``result`` for the caller.
* ``apply`` is the fold: deterministic, driven only by the event and its
  ``Meta``; it mutates ``state`` and returns the personal notices the event
  causes. Replaying the log through ``apply`` rebuilds the same state, so any
  bookkeeping that notices depend on (e.g. the last position a guest was told)
  lives in the state and is updated by ``apply`` itself.
* ``dump``/``load`` turn state into JSON-compatible data and back (snapshots).
* ``view`` is the snapshot a viewer may see (GET .../state and ``reset``).
* A ``private`` domain decides who may read a room from its state
  (``can_read``), and what each reader sees of every event: ``audience`` names
  the viewer's class (None: sees everything, the fast path) and
  ``redact(data, audience)`` returns the stored event data, a copy without
  hidden fields, or None (the reader gets a ``skip`` placeholder). Both are
  applied on every path: live, replay, long-poll, SSE and history.
  ``still_reads(data, who)`` says whether an event changes that: False when
  ``who`` may no longer read the room after it (the hub then ends the
  subscription before that event goes out), None when the event changes
  nothing about who reads.
* ``hook_view(state, command, actor, now_ms)`` is what a command hook's backend is told
  of the state (``roomlog.hooks``): the facts its rules need for this command,
  not the whole state (it travels with every hooked command). A command a
  backend allowed reaches ``decide`` with ``command.approval`` set; the runner
  stamps the approval's data into the command's events as ``hook``, so
  ``decide`` reads it only when its rules depend on it. A denied command never
  reaches ``decide``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from roomlog.errors import RoomlogError
from roomlog.identity import Principal

__all__ = ["Approval", "Claim", "Command", "Decision", "Domain", "Event", "Meta", "Notice"]

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class Approval:
    """A command hook's backend allowed the command (see ``roomlog.hooks``).

    ``data``: what the backend says the command's events carry (e.g. a verified
    amount); the runner stamps it into each event as ``hook``. ``failed_open``:
    the hook did not answer and is configured to fail open, so nothing was
    verified: a rule that needs the backend's word must refuse such a command.
    ``pending``: the rules are checked before the hook is asked (so a command the
    room would refuse costs the backend nothing); the data is not known yet, and
    a rule that needs it lets the command pass for now.
    """

    data: dict[str, Any] = field(default_factory=dict)
    failed_open: bool = False
    pending: bool = False


@dataclass(frozen=True, slots=True)
class Command:
    name: str  # e.g. "request.submit"
    args: dict[str, Any]
    approval: Approval | None = None  # set when a command hook is configured for it


@dataclass(frozen=True, slots=True)
class Event:
    """One log entry of a domain room, stored as ``{"event": type, **data}``."""

    type: str  # e.g. "request.submitted"
    data: dict[str, Any]

    def to_data(self) -> dict[str, Any]:
        return {"event": self.type, **self.data}

    @classmethod
    def from_data(cls, data: Any) -> Event:
        body = dict(data)
        return cls(str(body.pop("event")), body)


@dataclass(frozen=True, slots=True)
class Meta:
    """What the log adds to an event: who caused it, its seq and commit time."""

    actor: str
    seq: int
    ts: int  # milliseconds since the Unix epoch


@dataclass(frozen=True, slots=True)
class Notice:
    """A message the event causes in another room, stored durably in the same
    transaction: a personal notification in ``user:{user}`` by default, or an
    entry of another room named by ``room`` (a staff feed)."""

    user: str
    data: dict[str, Any]
    room: str | None = None

    @property
    def target(self) -> str:
        return self.room or f"user:{self.user}"


@dataclass(frozen=True, slots=True)
class Claim:
    """A key the command uses up, once ever, in every room and on every instance
    (e.g. ``payment:{reference}``). The runner claims it in the command's
    transaction; if it is taken already, the command fails with ``taken`` and
    nothing of it is stored."""

    key: str
    taken: RoomlogError


@dataclass(frozen=True, slots=True)
class Decision:
    """The events a command causes and the result for its caller.

    ``error``: the command is refused with this error, yet its events are stored
    and the refusal remembered for its id (a payment that was verified before the
    room refused its request must still get a record: its refund). ``claims``:
    see :class:`Claim`.
    """

    events: list[Event]
    result: dict[str, Any] = field(default_factory=dict)
    claims: tuple[Claim, ...] = ()
    error: RoomlogError | None = None


class Domain(Protocol, Generic[S]):
    kind: str
    private: bool  # reading needs the state (can_read) and readers see different things
    commands: list[str]  # the command names ``decide`` knows

    def initial(self, room_id: str) -> S: ...

    def decide(self, state: S, command: Command, actor: Principal, now_ms: int) -> Decision: ...

    def apply(self, state: S, event: Event, meta: Meta) -> list[Notice]: ...

    def view(self, state: S, viewer: Principal) -> dict[str, Any]: ...

    def dump(self, state: S) -> dict[str, Any]: ...

    def load(self, data: dict[str, Any]) -> S: ...

    def can_subscribe(self, who: Principal, room_id: str) -> bool: ...

    def can_publish(self, who: Principal, room_id: str) -> bool: ...

    def can_read(self, state: S, who: Principal) -> bool: ...

    def audience(self, who: Principal) -> str | None: ...

    def redact(self, data: dict[str, Any], audience: str) -> dict[str, Any] | None: ...

    def still_reads(self, data: dict[str, Any], who: Principal) -> bool | None: ...

    def hook_view(self, state: S, command: Command, actor: Principal,
                  now_ms: int) -> dict[str, Any]: ...
