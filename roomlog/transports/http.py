"""What every HTTP endpoint shares: bearer auth, coded JSON errors, query parsing."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import ParamSpec

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from roomlog.errors import ErrorCode, ProtocolError, RoomlogError
from roomlog.identity import Principal
from roomlog.rooms import RoomName, parse_room
from roomlog.services import Services

__all__ = ["authenticate", "error_response", "handles_errors", "query_int", "room_of"]

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
    """Turn RoomlogError into its coded JSON response; log anything else."""

    @functools.wraps(endpoint)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        try:
            return await endpoint(*args, **kwargs)
        except RoomlogError as err:
            return error_response(err)
        except Exception:
            logger.exception("HTTP endpoint %s failed", endpoint.__qualname__)
            return error_response(RoomlogError(ErrorCode.INTERNAL, "internal error"))

    return wrapper


def authenticate(request: Request, services: Services, *, allow_query: bool = False) -> Principal:
    """The bearer token's principal. ``allow_query`` also takes ``?token=``
    (only for SSE: EventSource cannot send headers)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        token = request.query_params.get("token", "") if allow_query else ""
    if not token:
        raise RoomlogError(ErrorCode.UNAUTHORIZED, "send 'Authorization: Bearer <token>'")
    principal, _ = services.tokens.verify(token.strip())
    return principal


def room_of(request: Request) -> RoomName:
    return parse_room(request.path_params["room"])


def query_int(request: Request, name: str, default: int, *, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ProtocolError(f"'{name}' must be an integer") from None
    if not low <= value <= high:
        raise ProtocolError(f"'{name}' must be between {low} and {high}")
    return value
