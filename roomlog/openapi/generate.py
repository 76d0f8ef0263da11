"""``/openapi.json`` from the app's routes: each route's endpoint (or mount) carries
its :class:`~roomlog.openapi.operation.Operation`, and this module turns the list
into an OpenAPI 3.1 document. Nothing is listed by hand here, so a route added to
``app.py`` appears in the description with the operation written next to its code,
and one added without it is named by :func:`undocumented` (a test fails on it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from starlette.convertors import FloatConvertor, IntegerConvertor
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

from roomlog.openapi.operation import Auth, Operation, Param, operation_of
from roomlog.openapi.schemas import COMPONENTS, ref

__all__ = ["Endpoint", "document", "endpoints", "undocumented"]

OPENAPI = "3.1.0"
_CONVERTER = re.compile(r"\{(\w+)(:\w+)?\}")
_REQUEST_ID = {"description": "the request's id, to quote when reporting a problem",
               "required": True, "schema": {"type": "string"}}
_SECURITY: dict[Auth, list[dict[str, list[str]]]] = {
    Auth.NONE: [],
    Auth.BEARER: [{"bearer": []}],
    Auth.BEARER_OR_QUERY: [{"bearer": []}, {"query_token": []}],
}
_ERROR_HEADERS = {
    401: {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}}},
    503: {"Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}}},
}


@dataclass(frozen=True)
class Endpoint:
    """One method of one path of the app, with its operation (None: undocumented)."""

    method: str
    path: str  # OpenAPI form: /v1/admin/bans/{ban_id}
    operation: Operation | None
    path_params: dict[str, Any]  # name -> schema, from the route's converters


def endpoints(routes: Sequence[BaseRoute], prefix: str = "") -> Iterator[Endpoint]:
    """Every method of every route, mounts and WebSocket routes included, in order."""
    for route in routes:
        if isinstance(route, Route):
            path = prefix + route.path
            for method in sorted(route.methods or ("GET",)):
                if method != "HEAD":
                    yield Endpoint(method, _plain(path), operation_of(route.endpoint, method),
                                   _converted(path, route.param_convertors))
        elif isinstance(route, WebSocketRoute):
            yield Endpoint("GET", _plain(prefix + route.path),
                           operation_of(route.endpoint, "GET"),
                           _converted(route.path, route.param_convertors))
        elif isinstance(route, Mount):
            op = operation_of(route, "GET")
            if op is None and route.routes:  # a router of its own: its routes
                yield from endpoints(route.routes, prefix + route.path)
            else:
                yield Endpoint("GET", f"{prefix}{route.path}/{{path}}", op,
                               {"path": {"type": "string"}})
        else:
            yield Endpoint("GET", f"{prefix}<{type(route).__name__}>", None, {})


def undocumented(routes: Sequence[BaseRoute]) -> list[str]:
    """``"METHOD /path"`` of every endpoint without an operation."""
    return [f"{e.method} {e.path}" for e in endpoints(routes) if e.operation is None]


def document(routes: Sequence[BaseRoute], *, title: str, version: str,
             description: str) -> dict[str, Any]:
    """The OpenAPI document of ``routes`` (undocumented endpoints are left out: the
    coverage test names them)."""
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints(routes):
        if endpoint.operation is not None:
            item = paths.setdefault(endpoint.path, {})
            item.setdefault(endpoint.method.lower(), _operation(endpoint, endpoint.operation))
    return {
        "openapi": OPENAPI,
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {
            "schemas": dict(COMPONENTS),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                           "description": "a token (docs/protocol.md#authentication)"},
                "query_token": {"type": "apiKey", "in": "query", "name": "token",
                                "description": "the token in the URL, for EventSource and "
                                               "<img>, which cannot send headers"},
            },
        },
    }


def _plain(path: str) -> str:
    """``{ban_id:int}`` -> ``{ban_id}``."""
    return _CONVERTER.sub(lambda m: "{" + m.group(1) + "}", path)


def _converted(path: str, convertors: dict[str, Any]) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for name, convertor in convertors.items():
        if isinstance(convertor, IntegerConvertor):
            schemas[name] = {"type": "integer", "minimum": 0}
        elif isinstance(convertor, FloatConvertor):
            schemas[name] = {"type": "number", "minimum": 0}
        else:
            schemas[name] = {"type": "string", "minLength": 1}
    return schemas


def _operation(endpoint: Endpoint, op: Operation) -> dict[str, Any]:
    declared = {(p.where, p.name): p for p in op.params}
    params = [_param(p) for p in op.params]
    for name, schema in endpoint.path_params.items():  # the route's own, when not declared
        if ("path", name) not in declared:
            params.append(_param(Param(name, "path", schema, "", required=True)))
    out: dict[str, Any] = {
        "operationId": _operation_id(endpoint.method, endpoint.path),
        "summary": op.summary,
        "tags": list(op.tags),
        "security": _SECURITY[op.auth],
        "responses": _responses(op),
    }
    if op.description:
        out["description"] = op.description
    if params:
        out["parameters"] = params
    if op.body is not None:
        out["requestBody"] = {
            "required": op.body.required,
            "content": {media: {"schema": dict(schema)}
                        for media, schema in op.body.content.items()},
            **({"description": op.body.description} if op.body.description else {})}
    return out


def _param(p: Param) -> dict[str, Any]:
    return {"name": p.name, "in": p.where, "required": p.required or p.where == "path",
            "schema": dict(p.schema), **({"description": p.description} if p.description
                                         else {})}


def _responses(op: Operation) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status, reply in sorted(op.replies.items()):
        headers = {"X-Request-Id": _REQUEST_ID,
                   **{name: {"description": text, "schema": {"type": "string"}}
                      for name, text in reply.headers.items()}}
        entry: dict[str, Any] = {"description": reply.description, "headers": headers}
        if reply.content:
            entry["content"] = {media: {"schema": dict(schema)}
                                for media, schema in reply.content.items()}
        out[str(status)] = entry
    errors = set(op.errors)
    if op.auth is not Auth.NONE:
        errors |= {401, 403}
    for status in sorted(errors):
        out[str(status)] = {
            "description": f"{HTTPStatus(status).phrase}: a coded error",
            "headers": {"X-Request-Id": _REQUEST_ID, **_ERROR_HEADERS.get(status, {})},
            "content": {"application/json": {"schema": ref("Error")}}}
    return out


def _operation_id(method: str, path: str) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_")
    return f"{method.lower()}_{words or 'root'}"
