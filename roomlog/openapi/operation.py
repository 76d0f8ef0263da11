"""What an HTTP endpoint says about itself, next to its code. Pure; no I/O.

Every endpoint carries an :class:`Operation` (``@describe(Operation(...))`` on the
function, or :func:`attach` on a mount); ``roomlog.openapi.generate`` walks the app's
routes and builds ``/openapi.json`` from what it finds, so the description changes
with the code. A route without one is listed by ``undocumented`` and fails
``tests/openapi/test_coverage.py``: add an ``Operation`` where you add a route.

An operation names its success answers (:class:`Reply`) and the HTTP statuses of the
coded errors it can give (``errors``); the generator adds the shared error body
(``{"error": {"code", "message", ...}}``) to each, and 401 and 403 (BANNED) to every
operation that takes a token.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

__all__ = ["ATTRIBUTE", "Auth", "Body", "Operation", "Param", "Reply", "Schema", "attach",
           "describe", "operation_of"]

Schema = Mapping[str, Any]  # a JSON Schema (OpenAPI 3.1: JSON Schema 2020-12)
ATTRIBUTE = "__roomlog_operations__"

T = TypeVar("T")


class Auth(StrEnum):
    """How an operation is authenticated."""

    NONE = "none"  # open (health, metrics, the docs, the pages)
    BEARER = "bearer"  # Authorization: Bearer <token>
    BEARER_OR_QUERY = "bearer_or_query"  # also ?token= (EventSource, <img>)


@dataclass(frozen=True)
class Param:
    """A path, query or header parameter."""

    name: str
    where: str  # "path", "query" or "header"
    schema: Schema
    description: str
    required: bool = False


@dataclass(frozen=True)
class Body:
    """A request body: one schema per media type."""

    content: Mapping[str, Schema]
    description: str = ""
    required: bool = True


@dataclass(frozen=True)
class Reply:
    """A success answer: its description, body schema per media type (none: no body
    described) and headers (name -> description)."""

    description: str
    content: Mapping[str, Schema] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Operation:
    """One method of one path: what the generator turns into an OpenAPI operation.

    ``method`` is needed only where one function serves several methods; a route's
    own methods decide otherwise. ``errors`` lists the statuses of coded errors
    besides 401/403 (added for ``auth`` other than NONE)."""

    summary: str
    description: str = ""
    tags: tuple[str, ...] = ()
    auth: Auth = Auth.BEARER
    params: tuple[Param, ...] = ()
    body: Body | None = None
    replies: Mapping[int, Reply] = field(default_factory=dict)
    errors: tuple[int, ...] = ()
    method: str = ""


def describe(*operations: Operation) -> Callable[[T], T]:
    """Decorator: the endpoint's operations (one, or one per method it serves). Put it
    outermost, above ``@handles_errors``."""

    def mark(endpoint: T) -> T:
        return attach(endpoint, *operations)

    return mark


def attach(target: T, *operations: Operation) -> T:
    """Give ``target`` (an endpoint function, or a route or mount object) its
    operations; returns it."""
    setattr(target, ATTRIBUTE, tuple(operations))
    return target


def operations(target: object) -> tuple[Operation, ...]:
    """Every operation ``target`` declares (for a wrapper to declare them too)."""
    found: tuple[Operation, ...] = getattr(target, ATTRIBUTE, ())
    return found


def operation_of(target: object, method: str) -> Operation | None:
    """The operation ``target`` declares for ``method``, or None."""
    found: tuple[Operation, ...] = getattr(target, ATTRIBUTE, ())
    for op in found:
        if not op.method or op.method.upper() == method.upper():
            return op
    return None
