"""Who is acting: a principal is a user id with one role. Pure; no I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["STAFF", "Grant", "Principal", "Role"]


class Role(enum.StrEnum):
    GUEST = "guest"  # a person at an event: requests songs, chats
    DJ = "dj"  # runs a queue room
    CUSTOMER = "customer"  # follows their own repair tickets
    TECHNICIAN = "technician"  # works repair tickets
    ADMIN = "admin"  # sees and corrects everything
    SERVICE = "service"  # a backend publishing over HTTP


STAFF = frozenset({Role.DJ, Role.TECHNICIAN, Role.ADMIN, Role.SERVICE})


@dataclass(frozen=True, slots=True)
class Principal:
    user: str
    role: Role

    @property
    def is_operator(self) -> bool:
        """Admins and backends may act in any room."""
        return self.role in (Role.ADMIN, Role.SERVICE)


@dataclass(frozen=True, slots=True)
class Grant:
    """What a verified token grants: its principal, until when (Unix seconds), and
    its id (``jti``), by which one token can be banned; None when it has none."""

    principal: Principal
    expires: float
    jti: str | None = None
