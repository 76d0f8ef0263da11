"""Bans: who may no longer use the hub. Pure; no I/O.

A :class:`Ban` names a *target*: a user id (every role of it, or one role), or
one token by its ``jti``. It has a reason, the principal who made it, and an
end (``until``; None: until lifted). A ban is *in force* from its creation
until it ends or an admin lifts it; then it stays on record (for the operator's
console) with its status ``expired`` or ``lifted``.

* :class:`BanStore` is the port of the durable list (the SQL adapter is
  ``roomlog/log/bans.py``): the database is the source of truth, so a ban
  survives restarts and reaches instances that missed its broadcast.
* :class:`BanList` is the in-memory index of the bans in force that each instance
  checks on every connect, refresh and HTTP request (a dictionary lookup, no
  database read), and against what is already open when it changes.
* :func:`parse_ban` checks an admin's ``POST /v1/admin/bans`` body and
  :func:`parse_query` the filters of a listing; both raise ``BAD_FRAME``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from roomlog import params
from roomlog.errors import ErrorCode, ProtocolError, RoomlogError
from roomlog.identity import Grant, Principal, Role

__all__ = ["STATUSES", "Ban", "BanList", "BanQuery", "BanStore", "NewBan", "banned_error",
           "parse_ban", "parse_query"]

Status = Literal["active", "expired", "lifted"]
STATUSES = ("active", "expired", "lifted", "all")
MAX_REASON = 500
MAX_USER = 200
MAX_JTI = 128
MAX_DURATION_MS = 100 * 365 * 86_400_000  # a ban may be long, but it is a number we can store
MAX_PAGE = 500
DEFAULT_PAGE = 100


@dataclass(frozen=True, slots=True)
class NewBan:
    """What an admin asks to ban (checked by :func:`parse_ban`)."""

    user: str | None
    role: Role | None
    jti: str | None
    reason: str
    until_ms: int | None


@dataclass(frozen=True, slots=True)
class Ban:
    id: int
    user: str | None  # a user id, or None for a ban of one token
    role: Role | None  # only this role of the user id; None: every role
    jti: str | None  # one token's id, or None for a ban of a user
    reason: str
    by: Principal
    created_ms: int
    until_ms: int | None = None  # None: until lifted
    lifted_ms: int | None = None
    lifted_by: Principal | None = None

    def status(self, now_ms: int) -> Status:
        if self.lifted_ms is not None:
            return "lifted"
        if self.until_ms is not None and self.until_ms <= now_ms:
            return "expired"
        return "active"

    def matches(self, grant: Grant) -> bool:
        """Whether this ban covers ``grant`` (whether in force or not)."""
        if self.jti is not None:
            return grant.jti == self.jti
        who = grant.principal
        return who.user == self.user and (self.role is None or who.role is self.role)

    def to_json(self, now_ms: int) -> dict[str, Any]:
        """The ban as the admin API shows it (and as instances broadcast it)."""
        return {"id": self.id, "user": self.user,
                "role": None if self.role is None else self.role.value, "jti": self.jti,
                "reason": self.reason, "by": _who(self.by), "created": self.created_ms,
                "until": self.until_ms, "lifted": self.lifted_ms,
                "lifted_by": None if self.lifted_by is None else _who(self.lifted_by),
                "status": self.status(now_ms)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Ban:
        """The inverse of :meth:`to_json`; KeyError or ValueError if it is not one."""
        lifted_by = data["lifted_by"]
        return cls(int(data["id"]), data["user"], None if data["role"] is None
                   else Role(data["role"]), data["jti"], str(data["reason"]),
                   _principal(data["by"]), int(data["created"]),
                   None if data["until"] is None else int(data["until"]),
                   None if data["lifted"] is None else int(data["lifted"]),
                   None if lifted_by is None else _principal(lifted_by))


def _who(principal: Principal) -> dict[str, str]:
    return {"user": principal.user, "role": principal.role.value}


def _principal(data: dict[str, Any]) -> Principal:
    return Principal(str(data["user"]), Role(data["role"]))


def banned_error(ban: Ban) -> RoomlogError:
    """What a banned client is told: BANNED, and until when (not the reason, which
    is the admins' note)."""
    until = "until it is lifted" if ban.until_ms is None else f"until {ban.until_ms} (ms)"
    return RoomlogError(ErrorCode.BANNED, f"banned by an admin {until}: do not reconnect "
                                           "with this token", details={"until": ban.until_ms})


@dataclass(frozen=True, slots=True)
class BanQuery:
    """Filters and a page of a listing (``GET /v1/admin/bans``), newest first."""

    user: str | None = None
    jti: str | None = None
    status: str = "all"  # one of STATUSES
    before: int | None = None  # only ids below this one (the previous page's ``next``)
    limit: int = DEFAULT_PAGE


class BanStore(Protocol):
    """Port of the durable ban list.

    Every method raises :class:`~roomlog.errors.Unavailable` when the database
    fails. ``add`` and ``lift`` return only after their commit, so a ban an
    instance enforces or broadcasts is one that a reload will find.
    """

    async def add(self, new: NewBan, by: Principal, now_ms: int) -> Ban:
        """Store a new ban; it gets the next id (ids only grow)."""

    async def lift(self, ban_id: int, by: Principal, now_ms: int) -> Ban | None:
        """End a ban now (recording who did it); a ban lifted before stays as it was.
        None if there is no such ban."""

    async def get(self, ban_id: int) -> Ban | None: ...

    async def in_force(self, now_ms: int) -> list[Ban]:
        """Every ban neither lifted nor ended at ``now_ms``."""

    async def find(self, query: BanQuery, now_ms: int) -> list[Ban]:
        """Bans matching ``query``, newest (highest id) first, at most ``query.limit``."""


class BanList:
    """The bans in force on this instance, indexed by user and by token.

    Changes come from this instance (a ban it made or lifted), from broadcasts
    of the others, and from periodic reloads of the whole list from the
    database. A reload that read the database before a change arrived by
    broadcast must not undo it: changes are remembered with the (monotonic)
    time they were applied and applied again over a reload that began earlier.
    """

    def __init__(self) -> None:
        self._bans: dict[int, Ban] = {}
        self._by_user: dict[str, set[int]] = {}
        self._by_jti: dict[str, set[int]] = {}
        self._changes: dict[int, tuple[float, Ban]] = {}

    def __len__(self) -> int:
        return len(self._bans)

    def blocking(self, grant: Grant, now_ms: int) -> Ban | None:
        """The ban in force that covers ``grant``, if any."""
        ids = set(self._by_user.get(grant.principal.user, ()))
        if grant.jti is not None:
            ids |= self._by_jti.get(grant.jti, set())
        for ban_id in sorted(ids):
            ban = self._bans[ban_id]
            if ban.status(now_ms) == "active" and ban.matches(grant):
                return ban
        return None

    def apply(self, ban: Ban, at: float, now_ms: int) -> None:
        """A ban made, changed or lifted, as of monotonic time ``at``."""
        self._changes[ban.id] = (at, ban)
        self._put(ban, now_ms)

    def replace(self, stored: Iterable[Ban], started: float, now_ms: int) -> None:
        """The whole list as a reload read it; the reload began at ``started``."""
        self._bans.clear()
        self._by_user.clear()
        self._by_jti.clear()
        for ban in stored:
            self._put(ban, now_ms)
        for ban_id, (at, ban) in list(self._changes.items()):
            if at >= started:  # newer than what the reload read
                self._put(ban, now_ms)
            else:  # the database had it when the reload read it
                del self._changes[ban_id]

    def _put(self, ban: Ban, now_ms: int) -> None:
        self._drop(ban.id)
        if ban.status(now_ms) != "active":
            return
        self._bans[ban.id] = ban
        if ban.user is not None:
            self._by_user.setdefault(ban.user, set()).add(ban.id)
        if ban.jti is not None:
            self._by_jti.setdefault(ban.jti, set()).add(ban.id)

    def _drop(self, ban_id: int) -> None:
        old = self._bans.pop(ban_id, None)
        if old is None:
            return
        for index, key in ((self._by_user, old.user), (self._by_jti, old.jti)):
            if key is not None:
                index[key].discard(ban_id)
                if not index[key]:
                    del index[key]


# ---------------------------------------------------------------------------
# The admin API's input


def parse_ban(body: dict[str, Any], now_ms: int) -> NewBan:
    """A ban request: ``user`` (and ``role``) or ``jti``; ``reason``; ``duration``
    (seconds) or ``until`` (ms), or neither for a ban until lifted."""
    user, role, jti = body.get("user"), body.get("role"), body.get("jti")
    if (user is None) == (jti is None):
        raise ProtocolError("name either a 'user' (optionally with a 'role') or a token's "
                            "'jti' to ban")
    if user is not None:
        _text(user, "user", MAX_USER)
    if jti is not None:
        _text(jti, "jti", MAX_JTI)
        if role is not None:
            raise ProtocolError("'role' narrows a ban of a 'user'; a 'jti' is one token")
    if role is not None:
        try:
            role = Role(role)
        except ValueError:
            raise ProtocolError(f"'role' must be one of {', '.join(Role)}") from None
    reason = body.get("reason", "")
    _text(reason, "reason", MAX_REASON, shortest=0)
    return NewBan(user, role, jti, reason, _until(body, now_ms))


def _text(value: Any, name: str, longest: int, *, shortest: int = 1) -> None:
    """A string the database stores as it is: PostgreSQL refuses NUL characters."""
    if (not isinstance(value, str) or not shortest <= len(value) <= longest
            or "\x00" in value):
        raise ProtocolError(f"'{name}' must be a string of {shortest} to {longest} "
                            "characters (no NUL)")


def _number(value: Any) -> bool:
    return (not isinstance(value, bool) and isinstance(value, int | float)
            and math.isfinite(value))


def _until(body: dict[str, Any], now_ms: int) -> int | None:
    duration, until = body.get("duration"), body.get("until")
    if duration is not None and until is not None:
        raise ProtocolError("give 'duration' (seconds) or 'until' (ms), not both")
    if duration is not None:
        if not _number(duration) or not 0 < duration * 1000 <= MAX_DURATION_MS:
            raise ProtocolError("'duration' must be a number of seconds above 0 and at most "
                                "100 years")
        return now_ms + math.ceil(float(duration) * 1000)
    if until is not None:
        if not _number(until) or not now_ms < until <= now_ms + MAX_DURATION_MS:
            raise ProtocolError("'until' must be a time in ms since the Unix epoch, in the "
                                "future and at most 100 years ahead")
        return int(until)
    return None


def parse_query(query: dict[str, str]) -> BanQuery:
    """The filters of ``GET /v1/admin/bans``: ``user``, ``jti``, ``status``,
    ``before`` and ``limit``."""
    status = query.get("status", "all")
    if status not in STATUSES:
        raise ProtocolError(f"'status' must be one of {', '.join(STATUSES)}")
    before, limit = query.get("before"), query.get("limit")
    user, jti = query.get("user") or None, query.get("jti") or None
    if user is not None:
        _text(user, "user", MAX_USER)
    if jti is not None:
        _text(jti, "jti", MAX_JTI)
    return BanQuery(
        user=user, jti=jti, status=status,
        before=None if before is None else params.integer(before, "before", low=1, high=2**62),
        limit=DEFAULT_PAGE if limit is None else params.integer(limit, "limit", low=1,
                                                                high=MAX_PAGE))
