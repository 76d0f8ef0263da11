"""What every HTTP endpoint shares: bearer auth (and bans), coded JSON errors,
query parsing."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from roomlog import params
from roomlog.errors import ErrorCode, ProtocolError, RoomlogError
from roomlog.identity import Grant, Principal
from roomlog.rooms import RoomName, parse_room
from roomlog.services import Services

__all__ = ["authenticate", "error_response", "grant_of", "handles_errors", "json_body",
           "query_int", "read_body", "room_of"]

logger = logging.getLogger(__name__)

P = ParamSpec("P")


def error_response(err: RoomlogError) -> JSONResponse:
    error: dict[str, object] = {"code": err.code.value, "message": err.message}
    headers = {}
    if err.retry_after is not None:
        error["retry_after"] = err.retry_after
        headers["Retry-After"] = str(max(1, round(err.retry_after)))
    if err.details:
        error["details"] = err.details
    body = {"error": error}
    if err.code is ErrorCode.UNAUTHORIZED:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=err.http_status, headers=headers)


def handles_errors(endpoint: Callable[P, Awaitable[Response]]) -> Callable[P, Awaitable[Response]]:
    """Turn RoomlogError into its coded JSON response; log anything else. A client
    that went away before its body was complete is no error of ours: nothing was
    done, it is counted (``roomlog_http_aborted``), and the answer goes nowhere."""

    @functools.wraps(endpoint)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        try:
            return await endpoint(*args, **kwargs)
        except RoomlogError as err:
            return error_response(err)
        except ClientDisconnect:
            request = next(a for a in args if isinstance(a, Request))
            request.app.state.stats.http_aborted += 1  # create_app puts the stats there
            logger.debug("%s %s: the client left before its body was complete",
                         request.method, request.url.path)
            return error_response(RoomlogError(ErrorCode.BAD_FRAME, "incomplete body"))
        except Exception:
            logger.exception("HTTP endpoint %s failed", endpoint.__qualname__)
            return error_response(RoomlogError(ErrorCode.INTERNAL, "internal error"))

    return wrapper


def grant_of(request: Request, services: Services, *, allow_query: bool = False) -> Grant:
    """What the bearer token grants, unless a ban covers it (BANNED). ``allow_query``
    also takes ``?token=`` (SSE and photos: EventSource and ``<img>`` cannot send
    headers)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        token = request.query_params.get("token", "") if allow_query else ""
    if not token:
        raise RoomlogError(ErrorCode.UNAUTHORIZED, "send 'Authorization: Bearer <token>'")
    grant = services.tokens.verify(token.strip())
    services.revocation.check(grant)
    return grant


def authenticate(request: Request, services: Services, *, allow_query: bool = False) -> Principal:
    """The principal of :func:`grant_of`."""
    return grant_of(request, services, allow_query=allow_query).principal


def room_of(request: Request) -> RoomName:
    return parse_room(request.path_params["room"])


def query_int(request: Request, name: str, default: int, *, low: int, high: int) -> int:
    """An integer query parameter (BAD_FRAME naming it unless plainly one in range)."""
    raw = request.query_params.get(name)
    return default if raw is None else params.integer(raw, name, low=low, high=high)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (PAYLOAD_TOO_LARGE) as soon as it passes ``limit``."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise RoomlogError(ErrorCode.PAYLOAD_TOO_LARGE, f"body above {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise RoomlogError(ErrorCode.PAYLOAD_TOO_LARGE, f"body above {limit} bytes")
    return b"".join(chunks)


async def json_body(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object (BAD_FRAME if it is not one)."""
    raw = await read_body(request, limit)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ProtocolError("the body must be a JSON object")
    return body
