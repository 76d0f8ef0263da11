"""The state of a ``queue:`` room, its snapshot format and the two orders.

A :class:`QueueState` is mutated only by :func:`roomlog.rooms.queue_apply.apply`
(the fold of the log). Everything here is plain data: no clock, no I/O.

A request moves through :class:`Status`; only these transitions exist
(:data:`TRANSITIONS`), and an attempt at another one is an
``INVALID_TRANSITION`` naming the current status:

=========  ===========================================================
from       to (command)
=========  ===========================================================
pending    accepted (accept), vetoed (veto), playing (play),
           cancelled (cancel, by its own guest)
accepted   vetoed (veto), playing (play), played (played)
playing    played (played, or play of another request)
=========  ===========================================================

Played, vetoed and cancelled are final.

Two orders matter to clients: the **accepted queue** (``state.queue``, set by
the DJ: accepted requests are appended, ``queue.reorder`` moves them) and the
**pending order** (paid jumps first, then votes descending, then age ascending: see
:func:`pending_order`). Positions are 1-based.
"""

from __future__ import annotations

import bisect
import enum
from dataclasses import dataclass, field
from typing import Any

from roomlog.rooms.queue_payment import Payment

__all__ = [
    "ACTIVE",
    "DEFAULT_SETTINGS",
    "HOUR_MS",
    "MINUTE_MS",
    "TRANSITIONS",
    "QueueState",
    "Request",
    "Settings",
    "Status",
    "dump_state",
    "load_state",
    "pending_order",
]

SNAPSHOT_VERSION = 1
MINUTE_MS = 60_000
HOUR_MS = 3_600_000


class Status(enum.StrEnum):
    PENDING = "pending"  # submitted, waiting for the DJ; guests vote on it
    ACCEPTED = "accepted"  # in the DJ's queue, at a position
    PLAYING = "playing"  # now playing (at most one request at a time)
    PLAYED = "played"  # done
    VETOED = "vetoed"  # the DJ said no (with an optional reason)
    CANCELLED = "cancelled"  # withdrawn by its guest while pending


# "Active" requests count against ``max_active_per_guest``, block duplicates
# and take votes.
ACTIVE = frozenset({Status.PENDING, Status.ACCEPTED})

# Which statuses each status-changing action starts from.
TRANSITIONS: dict[str, frozenset[Status]] = {
    "cancel": frozenset({Status.PENDING}),
    "accept": frozenset({Status.PENDING}),
    "veto": frozenset({Status.PENDING, Status.ACCEPTED}),
    "play": frozenset({Status.PENDING, Status.ACCEPTED}),
    "played": frozenset({Status.ACCEPTED, Status.PLAYING}),
    "reorder": frozenset({Status.ACCEPTED}),
    "vote": ACTIVE,
}


@dataclass(slots=True)
class Settings:
    request_cap_per_hour: int = 30  # submissions per room in any 60 minutes
    max_active_per_guest: int = 3  # pending + accepted requests of one guest
    submit_rate: int = 3  # submissions per guest in any 60 seconds
    voting: bool = True
    # Payments (roomlog.rooms.queue_payments): amounts in minor units of ``currency``.
    price: int = 0  # per request; 0: requests are free
    jump_price: int = 0  # to jump the pending order; 0: no jumping
    currency: str = "EUR"  # ISO 4217
    tips: bool = False  # guests may tip the DJ for a played request

    def to_data(self) -> dict[str, Any]:
        return {
            "request_cap_per_hour": self.request_cap_per_hour,
            "max_active_per_guest": self.max_active_per_guest,
            "submit_rate": self.submit_rate,
            "voting": self.voting,
            "price": self.price,
            "jump_price": self.jump_price,
            "currency": self.currency,
            "tips": self.tips,
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Settings:
        """Snapshots from before payments have no price: a free room."""
        return cls(
            request_cap_per_hour=int(data["request_cap_per_hour"]),
            max_active_per_guest=int(data["max_active_per_guest"]),
            submit_rate=int(data["submit_rate"]),
            voting=bool(data["voting"]),
            price=int(data.get("price", 0)),
            jump_price=int(data.get("jump_price", 0)),
            currency=str(data.get("currency", "EUR")),
            tips=bool(data.get("tips", False)),
        )

    @property
    def paid(self) -> bool:
        return self.price > 0


DEFAULT_SETTINGS = Settings().to_data()


@dataclass(slots=True)
class Request:
    """One song request. ``number`` is its submission order (id ``r{number}``)."""

    id: str
    number: int
    user: str
    song_id: str
    title: str
    artist: str
    note: str | None
    submitted_ms: int
    status: Status = Status.PENDING
    updated_ms: int = 0  # when the status last changed
    reason: str | None = None  # the DJ's veto reason
    voters: set[str] = field(default_factory=set)
    told_position: int | None = None  # the queue position its guest was last told
    jump: bool = False  # paid to jump: sorts before every pending request that did not
    payment_id: str | None = None  # its payment (``state.payments``), if it was paid for

    @property
    def votes(self) -> int:
        return len(self.voters)

    def public(self) -> dict[str, Any]:
        """What every subscriber may know about the request (no voter list)."""
        return {
            "id": self.id,
            "user": self.user,
            "song_id": self.song_id,
            "title": self.title,
            "artist": self.artist,
            "note": self.note,
            "status": str(self.status),
            "votes": self.votes,
            "submitted_ms": self.submitted_ms,
            "updated_ms": self.updated_ms,
            "reason": self.reason,
            "jump": self.jump,
            "payment_id": self.payment_id,
        }

    def to_data(self) -> dict[str, Any]:
        return {
            **self.public(),
            "number": self.number,
            "voters": sorted(self.voters),
            "told_position": self.told_position,
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Request:
        return cls(
            id=str(data["id"]),
            number=int(data["number"]),
            user=str(data["user"]),
            song_id=str(data["song_id"]),
            title=str(data["title"]),
            artist=str(data["artist"]),
            note=data["note"],
            submitted_ms=int(data["submitted_ms"]),
            status=Status(data["status"]),
            updated_ms=int(data["updated_ms"]),
            reason=data["reason"],
            voters=set(data["voters"]),
            told_position=data["told_position"],
            jump=bool(data.get("jump", False)),
            payment_id=data.get("payment_id"),
        )


@dataclass(slots=True)
class QueueState:
    """One DJ set. ``owner`` is None until a DJ's first command claims the room."""

    room_id: str
    owner: str | None = None
    open: bool = True
    settings: Settings = field(default_factory=Settings)
    requests: dict[str, Request] = field(default_factory=dict)  # by id, submission order
    queue: list[str] = field(default_factory=list)  # accepted request ids, in play order
    playing: str | None = None
    next_number: int = 1
    # (ts, user) of every submission in the hour before the last one, oldest first
    # (sorted: so the hour is pruned from the front, not by a copy of the list at
    # each submit): the sliding windows of ``submit_rate`` and ``request_cap_per_hour``.
    submits: list[tuple[int, str]] = field(default_factory=list)
    clock_ms: int = 0  # ts of the last applied event
    # Derived, not dumped: pending_key of every pending request, sorted, so a
    # request's pending position is a bisect (a vote in a 500-request room would
    # otherwise scan them all). Kept by the fold: add_pending / drop_pending.
    pending_keys: list[tuple[int, int, int]] = field(default_factory=list)
    # Payments of requests and tips, by id (``p{n}``), oldest first; ``references``
    # (derived, not dumped) holds every payment reference this room took.
    payments: dict[str, Payment] = field(default_factory=dict)
    next_payment: int = 1
    references: set[str] = field(default_factory=set)

    @property
    def room(self) -> str:
        return f"queue:{self.room_id}"


def pending_key(request: Request, votes: int | None = None) -> tuple[int, int, int]:
    """Its sort key among pending requests: paid jumps first, then most votes, then
    oldest."""
    return -int(request.jump), -(request.votes if votes is None else votes), request.number


def add_pending(state: QueueState, request: Request) -> None:
    bisect.insort(state.pending_keys, pending_key(request))


def drop_pending(state: QueueState, request: Request) -> None:
    key = pending_key(request)
    index = bisect.bisect_left(state.pending_keys, key)
    if index < len(state.pending_keys) and state.pending_keys[index] == key:
        del state.pending_keys[index]


def pending_order(requests: dict[str, Request]) -> list[str]:
    """Pending request ids, most votes first, then oldest first."""
    pending = [r for r in requests.values() if r.status is Status.PENDING]
    pending.sort(key=pending_key)
    return [r.id for r in pending]


def dump_state(state: QueueState) -> dict[str, Any]:
    """JSON-compatible and canonical: equal states dump to equal data."""
    return {
        "version": SNAPSHOT_VERSION,
        "room_id": state.room_id,
        "owner": state.owner,
        "open": state.open,
        "settings": state.settings.to_data(),
        "requests": [r.to_data() for r in state.requests.values()],
        "queue": list(state.queue),
        "playing": state.playing,
        "next_number": state.next_number,
        "submits": [[ts, user] for ts, user in state.submits],
        "clock_ms": state.clock_ms,
        "payments": [p.to_data() for p in state.payments.values()],
        "next_payment": state.next_payment,
    }


def load_state(data: dict[str, Any]) -> QueueState:
    """The inverse of :func:`dump_state`; ValueError on an unknown snapshot version."""
    if data.get("version") != SNAPSHOT_VERSION:
        raise ValueError(f"unknown queue snapshot version {data.get('version')!r}")
    requests = [Request.from_data(r) for r in data["requests"]]
    pending = sorted(pending_key(r) for r in requests if r.status is Status.PENDING)
    payments = [Payment.from_data(p) for p in data.get("payments", [])]
    return QueueState(
        room_id=str(data["room_id"]),
        owner=data["owner"],
        open=bool(data["open"]),
        settings=Settings.from_data(data["settings"]),
        requests={r.id: r for r in requests},
        queue=[str(i) for i in data["queue"]],
        playing=data["playing"],
        next_number=int(data["next_number"]),
        submits=sorted((int(ts), str(user)) for ts, user in data["submits"]),
        clock_ms=int(data["clock_ms"]),
        pending_keys=pending,
        payments={p.id: p for p in payments},
        next_payment=int(data.get("next_payment", 1)),
        references={p.reference for p in payments},
    )
