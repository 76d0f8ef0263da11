"""The webhook endpoints of the admin API (``/v1/admin/webhooks``), for admins and
services.

* ``POST /v1/admin/webhooks``: create (201, with its secret: the only time it is shown
  besides a rotation);
* ``GET /v1/admin/webhooks``: the list; ``GET /v1/admin/webhooks/{id}``: one, with
  its delivery figures when this instance delivers it;
* ``PATCH /v1/admin/webhooks/{id}``: change url, description, rooms, events,
  enabled, batch_max; ``DELETE``: remove it (with its cursors and attempts);
* ``POST .../rotate``: a new secret; the old ones keep signing for ``grace`` seconds;
* ``POST .../redeliver``: ``{"room": ..., "from": seq}`` delivers that room again
  from ``seq``;
* ``GET .../attempts?limit=``: the recent attempts, newest first.

URLs that resolve to loopback, link-local or private addresses are refused
(``BAD_FRAME``) unless ``webhook_allow_private``; the delivery checks the address
again at each connection. ``docs/backends.md#webhooks`` documents the bodies.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import socket
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from roomlog.errors import ErrorCode, ProtocolError, RoomlogError
from roomlog.identity import Principal
from roomlog.openapi.operation import Body, Operation, Param, describe
from roomlog.openapi.schemas import (
    INT,
    MS,
    NULLABLE_MS,
    NULLABLE_STRING,
    SEQ,
    STRING,
    json_reply,
    obj,
)
from roomlog.outbound.policy import blocked_address
from roomlog.rooms import parse_room
from roomlog.services import Services
from roomlog.signing import new_secret
from roomlog.transports.http import authenticate, handles_errors, json_body, query_int
from roomlog.webhooks.endpoint import Endpoint, Secret, parse_change, parse_new
from roomlog.webhooks.store import Attempt

__all__ = ["WebhookApi"]

_MAX_BODY = 16_384
_GRACE = 86_400.0  # seconds an old secret keeps signing after a rotation, by default
_MAX_GRACE = 30 * 86_400.0
_MAX_SECRETS = 5


_TAGS = ("webhooks",)
_ID = Param("webhook_id", "path", {"type": "string"}, "the webhook's id (`wh_...`)",
            required=True)
_STRINGS = {"type": "array", "items": STRING}
_SECRET = obj({"created": MS, "expires": NULLABLE_MS}, {"secret": STRING, "prefix": STRING})
_WEBHOOK = obj({"id": STRING, "url": STRING, "description": STRING, "rooms": _STRINGS,
                "events": _STRINGS, "secrets": {"type": "array", "items": _SECRET},
                "enabled": {"type": "boolean"}, "batch_max": INT, "created": MS,
                "updated": MS, "version": INT, "disabled": NULLABLE_MS,
                "disabled_reason": NULLABLE_STRING},
               description="docs/backends.md#webhooks; `secrets[].secret` only in the "
                           "answers of create and rotate")
_FIELDS = {"url": STRING, "description": STRING, "rooms": _STRINGS, "events": _STRINGS,
           "enabled": {"type": "boolean"}, "batch_max": INT}
_ONE = obj({"webhook": _WEBHOOK})
_ATTEMPT = obj({"ts": MS, "room": STRING, "webhook_id": STRING, "first_seq": SEQ,
                "last_seq": SEQ, "status": {"type": ["integer", "null"]},
                "latency_ms": {"type": ["number", "null"]}, "error": NULLABLE_STRING,
                "ok": {"type": "boolean"}})


class WebhookApi:
    """Endpoints as bound methods; ``app.py`` lists them in its routes."""

    def __init__(self, services: Services) -> None:
        self._s = services

    def _operator(self, request: Request) -> Principal:
        who = authenticate(request, self._s)
        if not who.is_operator:
            raise RoomlogError(ErrorCode.FORBIDDEN, "only admin or service may manage webhooks")
        return who

    @property
    def _store(self) -> Any:
        return self._s.webhooks.store

    def _now_ms(self) -> int:
        return self._s.revocation.now_ms()

    async def _found(self, request: Request) -> Endpoint:
        endpoint_id = request.path_params["webhook_id"]
        endpoint = None
        if len(endpoint_id) <= 40:
            endpoint = await self._store.get(endpoint_id)
        if endpoint is None:
            raise RoomlogError(ErrorCode.NOT_FOUND, "no such webhook")
        assert isinstance(endpoint, Endpoint)
        return endpoint

    def _changed(self) -> None:
        self._s.webhooks.changed()

    @describe(Operation(
        "Create a webhook endpoint", tags=_TAGS,
        description="Delivered from the head of each matching room on; the answer is the "
                    "only one besides a rotation that shows the secret.",
        body=Body({"application/json": obj({"url": STRING, "rooms": _STRINGS},
                                           {**_FIELDS, "secret": STRING})}),
        replies={201: json_reply("created, with its secret", _ONE)}, errors=(400, 413, 503)))
    @handles_errors
    async def create(self, request: Request) -> Response:
        """201 ``{"webhook": {...}}`` with the secret."""
        self._operator(request)
        new = parse_new(await json_body(request, _MAX_BODY),
                        default_batch=self._s.settings.webhook_batch_max)
        await self._check_address(new.url)
        now = self._now_ms()
        endpoint = Endpoint(id="wh_" + secrets.token_hex(12), url=new.url,
                            description=new.description, rooms=new.rooms, events=new.events,
                            secrets=(Secret(new.secret, now),), enabled=new.enabled,
                            batch_max=new.batch_max, created_ms=now, updated_ms=now)
        await self._store.create(endpoint)
        self._changed()
        return JSONResponse({"webhook": endpoint.to_json(reveal=True)}, status_code=201)

    @describe(Operation(
        "The webhook endpoints", tags=_TAGS,
        replies={200: json_reply("every endpoint", obj(
            {"webhooks": {"type": "array", "items": _WEBHOOK}}))}, errors=(503,)))
    @handles_errors
    async def listing(self, request: Request) -> Response:
        self._operator(request)
        endpoints = await self._store.all()
        return JSONResponse({"webhooks": [e.to_json() for e in endpoints]})

    @describe(Operation(
        "One webhook endpoint", tags=_TAGS, params=(_ID,),
        replies={200: json_reply("the endpoint; `delivery` from the instance delivering it",
                                 obj({"webhook": _WEBHOOK, "delivery": {
                                     "type": ["object", "null"]}}))},
        errors=(404, 503)))
    @handles_errors
    async def details(self, request: Request) -> Response:
        """``{"webhook": {...}, "delivery": {...} | null}``: ``delivery`` when this
        instance delivers it (others answer null)."""
        self._operator(request)
        endpoint = await self._found(request)
        return JSONResponse({"webhook": endpoint.to_json(), "delivery": self._delivery(endpoint)})

    def _delivery(self, endpoint: Endpoint) -> dict[str, Any] | None:
        worker = self._s.webhooks.workers.get(endpoint.id)
        if worker is None:
            return None
        stats = worker.stats
        return {"instance": self._s.bus.instance, "delivered": stats.delivered,
                "failed": stats.failed, "retrying": worker.retrying,
                "lag_messages": worker.lag_messages, "lag_seconds": stats.lag_seconds}

    @describe(Operation(
        "Change a webhook endpoint", tags=_TAGS, params=(_ID,),
        body=Body({"application/json": obj({}, _FIELDS)}),
        replies={200: json_reply("as changed", _ONE)}, errors=(400, 404, 413, 503)))
    @handles_errors
    async def update(self, request: Request) -> Response:
        self._operator(request)
        change = parse_change(await json_body(request, _MAX_BODY))
        endpoint = await self._found(request)
        if change.url is not None:
            await self._check_address(change.url)
        changed = change.apply(endpoint, self._now_ms())
        widened = change.rooms is not None and set(change.rooms) != set(endpoint.rooms)
        reenabled = bool(change.enabled) and not endpoint.enabled
        if not await self._store.update(changed, widened=widened, reenabled=reenabled):
            raise RoomlogError(ErrorCode.NOT_FOUND, "no such webhook")
        self._changed()
        stored = await self._store.get(endpoint.id)
        return JSONResponse({"webhook": (stored or changed).to_json()})

    @describe(Operation(
        "Remove a webhook endpoint, its cursors and attempts", tags=_TAGS, params=(_ID,),
        replies={200: json_reply("removed", obj({"deleted": STRING}))}, errors=(404, 503)))
    @handles_errors
    async def delete(self, request: Request) -> Response:
        self._operator(request)
        endpoint = await self._found(request)
        await self._store.delete(endpoint.id)
        self._changed()
        return JSONResponse({"deleted": endpoint.id})

    @describe(Operation(
        "A new secret; the old ones keep signing for `grace` seconds", tags=_TAGS,
        params=(_ID,),
        body=Body({"application/json": obj({}, {"grace": {"type": "number", "minimum": 0},
                                                "secret": STRING})}),
        replies={200: json_reply("rotated, with its secrets", _ONE)},
        errors=(400, 404, 413, 503)))
    @handles_errors
    async def rotate(self, request: Request) -> Response:
        """``{"grace": seconds, "secret": "whsec_..."}`` (both optional): the new secret
        signs from now on, beside the old ones until ``grace`` (default a day) ends."""
        self._operator(request)
        body = await json_body(request, _MAX_BODY)
        unknown = sorted(set(body) - {"grace", "secret"})
        if unknown:
            raise ProtocolError(f"unknown field {unknown[0][:40]!r}; a rotation takes "
                                "'grace' and 'secret'")
        grace = body.get("grace", _GRACE)
        if (isinstance(grace, bool) or not isinstance(grace, int | float)
                or not math.isfinite(grace) or not 0 <= grace <= _MAX_GRACE):
            raise ProtocolError(f"'grace' must be seconds from 0 to {_MAX_GRACE:g}")
        secret = body.get("secret")
        secret = new_secret() if secret is None else parse_new(
            {"url": "http://x.invalid/", "rooms": ["*"], "secret": secret},
            default_batch=1).secret
        endpoint = await self._found(request)
        now = self._now_ms()
        ends = now + int(grace * 1000)
        kept = [s if s.expires_ms is not None and s.expires_ms <= ends
                else replace(s, expires_ms=ends)
                for s in endpoint.secrets if s.live(now) and grace > 0]
        rotated = replace(endpoint, secrets=(Secret(secret, now), *kept[:_MAX_SECRETS - 1]),
                          updated_ms=now)
        if not await self._store.update(rotated, widened=False):
            raise RoomlogError(ErrorCode.NOT_FOUND, "no such webhook")
        self._changed()
        stored = await self._store.get(endpoint.id)
        return JSONResponse({"webhook": (stored or rotated).to_json(reveal=True)})

    @describe(Operation(
        "Deliver a room again from a seq", tags=_TAGS, params=(_ID,),
        body=Body({"application/json": obj({"room": STRING},
                                           {"from": {"type": "integer", "minimum": 1}})}),
        replies={200: json_reply("where the delivery starts again", obj(
            {"room": STRING, "epoch": STRING, "from": SEQ, "head": SEQ}))},
        errors=(400, 404, 409, 413, 503)))
    @handles_errors
    async def redeliver(self, request: Request) -> Response:
        """``{"room": "queue:x", "from": 1}``: deliver the room again from seq ``from``
        (default 1) of its current epoch. ``{"room", "epoch", "from", "head"}``."""
        self._operator(request)
        body = await json_body(request, _MAX_BODY)
        unknown = sorted(set(body) - {"room", "from"})
        if unknown:
            raise ProtocolError(f"unknown field {unknown[0][:40]!r}; a redelivery takes "
                                "'room' and 'from'")
        room = str(parse_room(body.get("room")))
        start = body.get("from", 1)
        if isinstance(start, bool) or not isinstance(start, int) or not 1 <= start <= 2**62:
            raise ProtocolError("'from' must be a seq, an integer of 1 or more")
        endpoint = await self._found(request)
        if not endpoint.follows(room):
            raise RoomlogError(ErrorCode.CONFLICT, f"this webhook does not follow {room}")
        info = await self._store.rewind(endpoint.id, room, start - 1, self._now_ms())
        if not info.epoch:
            raise RoomlogError(ErrorCode.NOT_FOUND, f"{room} has no messages")
        self._changed()
        return JSONResponse({"room": room, "epoch": info.epoch,
                             "from": max(info.trimmed, min(start - 1, info.head)) + 1,
                             "head": info.head})

    @describe(Operation(
        "The endpoint's recent delivery attempts, newest first", tags=_TAGS,
        params=(_ID, Param("limit", "query", {"type": "integer", "minimum": 1},
                           "default 50, at most ROOMLOG_WEBHOOK_ATTEMPTS_KEPT")),
        replies={200: json_reply("the attempts", obj(
            {"attempts": {"type": "array", "items": _ATTEMPT}}))}, errors=(400, 404, 503)))
    @handles_errors
    async def attempts(self, request: Request) -> Response:
        """``{"attempts": [...]}``, newest first (``limit``, default 50)."""
        self._operator(request)
        limit = query_int(request, "limit", 50, low=1,
                          high=max(1, self._s.settings.webhook_attempts_kept))
        endpoint = await self._found(request)
        found: list[Attempt] = await self._store.attempts(endpoint.id, limit)
        return JSONResponse({"attempts": [a.to_json() for a in found]})

    async def _check_address(self, url: str) -> None:
        """BAD_FRAME unless the URL's host resolves, and only to addresses the policy
        allows (the delivery checks again at each connection: DNS may change)."""
        if self._s.settings.webhook_allow_private:
            return
        parts = urlsplit(url)
        host = parts.hostname or ""
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, parts.port or 443, type=socket.SOCK_STREAM)
        except OSError:
            raise ProtocolError(f"'url': cannot resolve {host[:100]!r}") from None
        for info in infos:
            address = str(info[4][0])
            if blocked_address(address):
                raise ProtocolError(
                    f"'url': {host[:100]!r} resolves to {address}, a loopback, link-local or "
                    "private address; webhooks go to public addresses unless the operator "
                    "sets ROOMLOG_WEBHOOK_ALLOW_PRIVATE")
