"""What each reader may see of a room, from the domain rules. Pure; no I/O.

The hub asks two questions of every private domain room (repair tickets):

* :func:`lens`: what this viewer sees of each message, as an ``(audience,
  redact)`` pair; None when the viewer sees every message whole (every room
  that is not private, and staff in private ones: the fast path).
  A personal room ``user:{id}`` is read by that user id in any role, but a
  notice written for one role (``for_role``, as repair tickets write their
  customer's) is a ``skip`` to the others: a token's role is part of who it is,
  and a guest token that names a customer's id is not that customer.
* :func:`gate`: whether a viewer still reads the room after a batch of its
  messages (an event that takes access away ends the subscription before it).
"""

from __future__ import annotations

from typing import Any

from roomlog.identity import Principal
from roomlog.protocol import Lens, Message
from roomlog.rooms import DOMAINS
from roomlog.rooms.domain import Domain

__all__ = ["gate", "lens"]


def _private(room: str) -> Domain[Any] | None:
    domain = DOMAINS.get(room.split(":", 1)[0])
    return domain if domain is not None and domain.private else None


def _hide_all(data: dict[str, Any], audience: str) -> dict[str, Any] | None:
    return None


def _for_role(data: dict[str, Any], audience: str) -> dict[str, Any] | None:
    """A personal notice as a reader of role ``audience`` sees it: whole, unless it
    names another role it is for. (Plain messages may be any JSON value, not only
    objects: those have no ``for_role``.)"""
    if isinstance(data, dict) and data.get("for_role", audience) != audience:
        return None
    return data


def lens(room: str, viewer: Principal | None) -> Lens | None:
    if room.startswith("user:"):
        return None if viewer is None or viewer.is_operator else (viewer.role.value,
                                                                  _for_role)
    domain = _private(room)
    if domain is None:
        return None
    if viewer is None:  # no principal: a private room shows nothing
        return ("nobody", _hide_all)
    audience = domain.audience(viewer)
    return None if audience is None else (audience, domain.redact)


class _Gate:
    """Whether a viewer still reads after these messages; the last event that
    decides wins (a technician removed, then assigned again, reads)."""

    def __init__(self, domain: Domain[Any], datas: list[dict[str, Any]]) -> None:
        self._domain = domain
        self._datas = datas

    def __call__(self, viewer: Principal | None) -> bool:
        if viewer is None:
            return True
        verdict: bool | None = None
        for data in self._datas:
            changed = self._domain.still_reads(data, viewer)
            if changed is not None:
                verdict = changed
        return verdict is not False


def gate(room: str, messages: list[Message]) -> _Gate | None:
    domain = _private(room)
    return None if domain is None else _Gate(domain, [m.data for m in messages])
