"""Webhook endpoints: what an operator configures, and what it selects. Pure; no I/O.

An :class:`Endpoint` is a URL with the rooms it follows (patterns: ``*``,
``queue:*``, ``user:*``, ``repair:t-1``; a ``*`` only at the end), the events it
wants (names matched against a message's ``data.event``, or its ``data.type``
for plain rooms; empty: every message), its signing secrets (several while one
rotates) and whether it is enabled. :func:`parse_new` and :func:`parse_change`
check an admin's JSON (``BAD_FRAME`` naming the field).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from roomlog.errors import ProtocolError
from roomlog.protocol import Message
from roomlog.signing import PREFIX, SignatureError, new_secret, sign

__all__ = ["MAX_BATCH", "Endpoint", "EndpointChange", "NewEndpoint", "Secret",
           "event_name", "parse_change", "parse_new", "wants"]

MAX_URL = 2000
MAX_DESCRIPTION = 500
MAX_PATTERNS = 50
MAX_EVENTS = 100
MAX_BATCH = 500  # events one delivery may carry (an endpoint's batch_max)
_PATTERN = re.compile(r"\*|[a-z][a-z0-9_]{0,31}:(\*|[A-Za-z0-9][A-Za-z0-9._@-]{0,127}\*?)")
_EVENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")


@dataclass(frozen=True, slots=True)
class Secret:
    value: str  # whsec_ + base64
    created_ms: int
    expires_ms: int | None = None  # set when a newer secret replaced it (rotation)

    def live(self, now_ms: int) -> bool:
        return self.expires_ms is None or self.expires_ms > now_ms

    def to_json(self) -> dict[str, Any]:
        return {"secret": self.value, "created": self.created_ms, "expires": self.expires_ms}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Secret:
        return cls(str(data["secret"]), int(data["created"]),
                   None if data.get("expires") is None else int(data["expires"]))


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    url: str
    description: str
    rooms: tuple[str, ...]
    events: tuple[str, ...]
    secrets: tuple[Secret, ...]
    enabled: bool
    batch_max: int
    created_ms: int
    updated_ms: int
    version: int = 1
    disabled_ms: int | None = None
    disabled_reason: str | None = None

    def follows(self, room: str) -> bool:
        """Whether a room's messages go to this endpoint (its name matches a pattern)."""
        return any(_matches(pattern, room) for pattern in self.rooms)

    def signing_secrets(self, now_ms: int) -> list[str]:
        """The secrets that sign a delivery now: the newest, and those still rotating out."""
        return [s.value for s in self.secrets if s.live(now_ms)]

    def to_json(self, *, reveal: bool = False) -> dict[str, Any]:
        """As the admin API shows it; secrets only when just made (create, rotate)."""
        secrets = [{"created": s.created_ms, "expires": s.expires_ms,
                    "prefix": s.value[:len(PREFIX) + 4] + "…"} for s in self.secrets]
        if reveal:
            secrets = [s.to_json() for s in self.secrets]
        return {"id": self.id, "url": self.url, "description": self.description,
                "rooms": list(self.rooms), "events": list(self.events), "secrets": secrets,
                "enabled": self.enabled, "batch_max": self.batch_max,
                "created": self.created_ms, "updated": self.updated_ms,
                "version": self.version, "disabled": self.disabled_ms,
                "disabled_reason": self.disabled_reason}


def _matches(pattern: str, room: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return room.startswith(pattern[:-1])
    return room == pattern


def like_prefixes(patterns: Sequence[str]) -> list[str] | None:
    """Name prefixes the patterns select (SQL LIKE 'prefix%'); None: every room."""
    if "*" in patterns:
        return None
    return [p[:-1] if p.endswith("*") else p for p in patterns]


def event_name(data: Any) -> str | None:
    """What an event filter matches: ``data.event`` (domain events, notices), else
    ``data.type`` (a plain room's own convention), else nothing."""
    if isinstance(data, dict):
        for key in ("event", "type"):
            value = data.get(key)
            if isinstance(value, str):
                return value
    return None


def wants(endpoint: Endpoint, message: Message) -> bool:
    """Whether a message of a followed room passes the endpoint's event filter."""
    if not endpoint.events:
        return True
    if b'"event"' not in message.raw and b'"type"' not in message.raw:
        return False  # no decode for data that cannot name an event
    return event_name(message.data) in endpoint.events


@dataclass(frozen=True, slots=True)
class NewEndpoint:
    url: str
    description: str
    rooms: tuple[str, ...]
    events: tuple[str, ...]
    secret: str
    enabled: bool
    batch_max: int


@dataclass(frozen=True, slots=True)
class EndpointChange:
    """The fields an update sets (None: unchanged)."""

    url: str | None = None
    description: str | None = None
    rooms: tuple[str, ...] | None = None
    events: tuple[str, ...] | None = None
    enabled: bool | None = None
    batch_max: int | None = None

    def apply(self, endpoint: Endpoint, now_ms: int) -> Endpoint:
        changed = replace(
            endpoint,
            url=endpoint.url if self.url is None else self.url,
            description=endpoint.description if self.description is None else self.description,
            rooms=endpoint.rooms if self.rooms is None else self.rooms,
            events=endpoint.events if self.events is None else self.events,
            enabled=endpoint.enabled if self.enabled is None else self.enabled,
            batch_max=endpoint.batch_max if self.batch_max is None else self.batch_max,
            updated_ms=now_ms, version=endpoint.version + 1)
        if self.enabled:  # enabled again by an operator: the disabling is over
            changed = replace(changed, disabled_ms=None, disabled_reason=None)
        return changed


_FIELDS = frozenset({"url", "description", "rooms", "events", "secret", "enabled",
                     "batch_max"})


def parse_new(body: dict[str, Any], *, default_batch: int) -> NewEndpoint:
    """``POST /v1/admin/webhooks``: ``url`` and ``rooms`` required; ``description``,
    ``events``, ``secret`` (whsec_…; made here if absent), ``enabled`` (true),
    ``batch_max``."""
    _known(body, _FIELDS)
    if "url" not in body or "rooms" not in body:
        raise ProtocolError("a webhook needs a 'url' and 'rooms' (patterns such as "
                            "'queue:*', or '*' for every room)")
    change = parse_change({k: v for k, v in body.items() if k != "secret"})
    secret = body.get("secret")
    if secret is None:
        secret = new_secret()
    else:
        _check_secret(secret)
    return NewEndpoint(url=change.url or "", description=change.description or "",
                       rooms=change.rooms or (), events=change.events or (), secret=secret,
                       enabled=True if change.enabled is None else change.enabled,
                       batch_max=change.batch_max or default_batch)


def parse_change(body: dict[str, Any]) -> EndpointChange:
    """``PATCH /v1/admin/webhooks/{id}``: any of the fields of :func:`parse_new` but
    ``secret`` (rotate it instead)."""
    _known(body, _FIELDS - {"secret"})
    url = body.get("url")
    if url is not None:
        _check_url(url)
    description = body.get("description")
    if description is not None and (not isinstance(description, str)
                                    or len(description) > MAX_DESCRIPTION
                                    or "\x00" in description):
        raise ProtocolError(f"'description' must be a string of at most {MAX_DESCRIPTION} "
                            "characters (no NUL)")
    rooms = body.get("rooms")
    if rooms is not None:
        rooms = _strings(rooms, "rooms", MAX_PATTERNS, _PATTERN, shortest=1,
                         what="room patterns ('*', 'queue:*', 'chat:lobby', 'chat:team-*')")
    events = body.get("events")
    if events is not None:
        events = _strings(events, "events", MAX_EVENTS, _EVENT, shortest=0,
                          what="event names ('request.submitted', 'status.changed')")
    enabled = body.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise ProtocolError("'enabled' must be true or false")
    batch = body.get("batch_max")
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int)
                              or not 1 <= batch <= MAX_BATCH):
        raise ProtocolError(f"'batch_max' must be an integer from 1 to {MAX_BATCH}")
    return EndpointChange(url, description, rooms, events, enabled, batch)


def _known(body: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ProtocolError(f"unknown field {unknown[0][:40]!r}; a webhook has "
                            f"{', '.join(sorted(allowed))}")


def _check_url(url: Any) -> None:
    if not isinstance(url, str) or not 0 < len(url) <= MAX_URL:
        raise ProtocolError(f"'url' must be a string of at most {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        raise ProtocolError("'url' is not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProtocolError("'url' must be an http:// or https:// URL with a host")
    if parts.username or parts.password or any(c.isspace() or ord(c) < 32 for c in url):
        raise ProtocolError("'url' may not hold credentials, spaces or control characters")


def _strings(value: Any, name: str, most: int, pattern: re.Pattern[str], *,
             shortest: int, what: str) -> tuple[str, ...]:
    if (not isinstance(value, list) or not shortest <= len(value) <= most
            or not all(isinstance(v, str) and pattern.fullmatch(v) for v in value)):
        raise ProtocolError(f"'{name}' must be a list of {shortest} to {most} {what}")
    return tuple(dict.fromkeys(value))


def _check_secret(secret: Any) -> None:
    if not isinstance(secret, str) or not secret.startswith(PREFIX) or len(secret) > 200:
        raise ProtocolError("'secret' must be 'whsec_' followed by base64 (at least 24 "
                            "bytes); leave it out to have one made")
    try:
        sign(secret, "x", 0, b"")
    except SignatureError:
        raise ProtocolError("'secret' must be 'whsec_' followed by base64") from None
    if len(secret) - len(PREFIX) < 32:  # base64 of 24 bytes
        raise ProtocolError("'secret' must hold at least 24 random bytes")
