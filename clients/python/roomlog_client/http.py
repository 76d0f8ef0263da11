"""The hub's HTTP API, as the client uses it (the one module that imports httpx).

Long-poll reads of a room's log, the head and the state of a room, publishes and
commands over POST, presence, and a liveness probe. An error response becomes an
:class:`HttpRefused` (its HTTP status and the :class:`ServerError` of its JSON
body); network failures are ``httpx.TransportError``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from roomlog_client.errors import ServerError
from roomlog_client.events import Ack, Pending

__all__ = ["HttpApi", "HttpRefused", "Page", "TransportError"]

TransportError = httpx.TransportError


@dataclass(frozen=True, slots=True)
class Page:
    """One answer of ``GET /v1/rooms/{room}/messages``."""

    room: str
    epoch: str
    head: int
    trimmed: int
    next: int
    frames: list[dict[str, Any]]


class HttpRefused(Exception):
    """An HTTP error response: ``status`` and the server's coded ``error``."""

    def __init__(self, status: int, error: ServerError) -> None:
        super().__init__(f"HTTP {status} {error}")
        self.status = status
        self.error = error


class HttpApi:
    """``base``: ``http(s)://host:port``; ``token()``: the bearer token to send now."""

    def __init__(self, base: str, token: Callable[[], str | None], *,
                 timeout: float = 10.0, client: httpx.AsyncClient | None = None) -> None:
        self.base = base.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._owned = client is None

    async def aclose(self) -> None:
        if self._owned:
            await self._client.aclose()

    def _headers(self) -> dict[str, str]:
        token = self._token()
        return {"authorization": f"Bearer {token}"} if token else {}

    async def _request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                       json: Any = None, seconds: float | None = None) -> Any:
        response = await self._client.request(
            method, self.base + path, params=params, json=json, headers=self._headers(),
            timeout=seconds if seconds is not None else self._timeout)
        if response.status_code >= 400:
            raise HttpRefused(response.status_code, _error_of(response))
        return response.json()

    async def read(self, room: str, after: int, epoch: str | None, *, wait: float = 0.0,
                   limit: int | None = None) -> Page:
        """The messages after ``after`` in ``epoch`` (or one ``reset``), holding the
        request up to ``wait`` seconds while there is nothing new."""
        params: dict[str, Any] = {"after": after}
        if epoch:
            params["epoch"] = epoch
        if wait > 0:
            params["wait"] = wait
        if limit is not None:
            params["limit"] = limit
        body = await self._request("GET", f"/v1/rooms/{room}/messages", params=params,
                                   seconds=wait + self._timeout)
        return _page(body)

    async def head(self, room: str) -> Page:
        """The room's epoch and head, no frames."""
        return _page(await self._request("GET", f"/v1/rooms/{room}/messages"))

    async def state(self, room: str) -> dict[str, Any] | None:
        """A domain room's ``{"epoch", "seq", "state"}``; None for rooms without state."""
        try:
            body = await self._request("GET", f"/v1/rooms/{room}/state")
        except HttpRefused as refused:
            if refused.status == 404:
                return None
            raise
        return dict(body)

    async def send(self, entry: Pending) -> Ack:
        """POST a publish or a command of the outbox, with its id."""
        if entry.kind == "publish":
            body = await self._request("POST", f"/v1/rooms/{entry.room}/messages",
                                       json={"id": entry.id, "data": entry.body.get("data")})
        else:
            body = await self._request("POST", f"/v1/rooms/{entry.room}/commands",
                                       json={"id": entry.id, **entry.body})
        return Ack.from_reply({"room": entry.room, "id": entry.id} | dict(body))

    async def presence(self, room: str) -> dict[str, Any]:
        return dict(await self._request("GET", f"/v1/rooms/{room}/presence"))

    async def live(self) -> bool:
        """Whether the server answers at all (``/health/live``); False on any failure."""
        try:
            response = await self._client.get(self.base + "/health/live", timeout=2.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200


def _page(body: Any) -> Page:
    return Page(str(body["room"]), str(body["epoch"]), int(body["head"]),
                int(body.get("trimmed", 0)), int(body["next"]), list(body.get("frames", [])))


def _error_of(response: httpx.Response) -> ServerError:
    """The coded error of a response; a body that is not ours (a proxy's 502 page)
    becomes UNAVAILABLE (5xx) or INTERNAL."""
    try:
        error = response.json().get("error")
    except ValueError:
        error = None
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        return ServerError.from_frame(error)
    retry = response.headers.get("retry-after")
    code = "UNAVAILABLE" if response.status_code >= 500 or response.status_code == 429 \
        else "INTERNAL"
    return ServerError(code, f"HTTP {response.status_code}",
                       retry_after=float(retry) if retry and retry.isdigit() else None)
