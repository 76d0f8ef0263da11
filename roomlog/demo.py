"""``roomlog demo``: a hub with something to look at, and the links to look at it.

:func:`prepare` makes the demo's directory (its SQLite database, secret and photos),
seeds two rooms through the ordinary write path (so they hold what real clients
would have made) and returns what ``roomlog serve`` needs to run it:

* ``queue:demo``: DJ ``dj1`` opened the queue; guests ``u1`` to ``u4`` asked for four
  songs and upvoted each other; the DJ accepted one;
* ``repair:t-100``: technician ``tech1`` created a ticket for customer ``cust1``
  (assigned to themself), diagnosed it, posted a milestone and a note, and sent a
  quote that waits for the customer's approval.

Seeding runs only into empty rooms: a second ``roomlog demo`` in the same directory
continues where the first left off (``--fresh`` starts over).

Once the server listens, :meth:`Plan.announce` prints a link per page with a
long-lived token for its person. The pages renew tokens through ``/demo/token``
(:func:`token_routes`; ``/config.json`` names it to them), a route that exists only in
the demo and only for the four page roles, never admin or service.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from roomlog.app import build_services
from roomlog.auth import Tokens, read_secret
from roomlog.commands import Call
from roomlog.errors import ErrorCode, RoomlogError
from roomlog.identity import Principal, Role
from roomlog.openapi.operation import Auth, Body, Operation, Param, describe
from roomlog.openapi.schemas import json_reply, ref
from roomlog.rooms.domain import Command
from roomlog.services import Services
from roomlog.settings import Settings
from roomlog.transports.http import error_response

__all__ = ["PAGES", "QUEUE", "TICKET", "Plan", "prepare", "seed", "token_routes"]

QUEUE = "queue:demo"
TICKET = "t-100"
REPAIR = f"repair:{TICKET}"
TOKEN_PATH = "/demo/token"

GUEST = Principal("u1", Role.GUEST)
DJ = Principal("dj1", Role.DJ)
CUSTOMER = Principal("cust1", Role.CUSTOMER)
TECHNICIAN = Principal("tech1", Role.TECHNICIAN)

#: (what the page is, its file, who opens it, its query without the token)
PAGES: list[tuple[str, str, Principal, dict[str, str]]] = [
    ("guest: request songs, upvote", "guest.html", GUEST, {"room": QUEUE}),
    ("DJ console", "dj.html", DJ, {"room": QUEUE}),
    ("customer: follow the repair, approve the quote", "repair.html", CUSTOMER,
     {"ticket": TICKET}),
    ("technician console", "tech.html", TECHNICIAN, {"ticket": TICKET}),
    ("DJ analytics: the queue's numbers in charts", "analytics.html", DJ, {"room": QUEUE}),
]

_PAGE_ROLES = {Role.GUEST, Role.DJ, Role.CUSTOMER, Role.TECHNICIAN}
# the web app's page names (clients/README.md, "Tokens for the pages"), and the files'
_BY_PAGE = {"guest": GUEST, "dj": DJ, "customer": CUSTOMER, "technician": TECHNICIAN,
            "repair": CUSTOMER, "tech": TECHNICIAN, "analytics": DJ}
_TAGS = ("demo",)
_USER_RE = re.compile(r"[A-Za-z0-9._@-]{1,64}")

_SONGS = [  # (guest, song_id, title, artist, note)
    ("u1", "one-more-time", "One More Time", "Daft Punk", "for Mia's birthday!"),
    ("u2", "dancing-on-my-own", "Dancing On My Own", "Robyn", None),
    ("u3", "dreams", "Dreams", "Fleetwood Mac", None),
    ("u4", "september", "September", "Earth, Wind & Fire", "the 21st is today"),
]
_VOTES = [("u2", "one-more-time"), ("u3", "one-more-time"), ("u4", "dreams")]
_ACCEPTED = "september"


async def _run(s: Services, room: str, who: Principal, ident: str, name: str,
               args: dict[str, Any]) -> dict[str, Any]:
    outcome = await s.publisher.command(room, Call(who, Command(name, args), ident))
    return outcome.result


async def _seed_queue(s: Services) -> None:
    await _run(s, QUEUE, DJ, "demo-open", "queue.open", {})
    ids: dict[str, str] = {}
    for user, song, title, artist, note in _SONGS:
        args: dict[str, Any] = {"song_id": song, "title": title, "artist": artist}
        if note:
            args["note"] = note
        result = await _run(s, QUEUE, Principal(user, Role.GUEST), f"demo-{song}",
                            "request.submit", args)
        ids[song] = result["request_id"]
    for user, song in _VOTES:
        await _run(s, QUEUE, Principal(user, Role.GUEST), f"demo-vote-{song}",
                   "request.vote", {"request_id": ids[song]})
    await _run(s, QUEUE, DJ, "demo-accept", "request.accept", {"request_id": ids[_ACCEPTED]})


async def _seed_repair(s: Services) -> None:
    steps: list[tuple[str, dict[str, Any]]] = [
        ("ticket.create", {"customer_id": CUSTOMER.user, "technicians": [TECHNICIAN.user],
                           "device": "Laptop: ThinkPad X1 Carbon (2019)",
                           "problem": "Does not charge; the battery stays at 0 %",
                           "internal": {"intake": "charger port feels loose"}}),
        ("status.set", {"status": "diagnosing"}),
        ("milestone.add", {"title": "Diagnosis done", "percent": 25}),
        ("note.add", {"text": "The USB-C charging port is worn out; the battery is fine.",
                      "priority": "normal", "visibility": "customer"}),
        ("note.add", {"text": "Port in stock (drawer B3).", "priority": "low",
                      "visibility": "internal"}),
        ("status.set", {"status": "awaiting_approval",
                        "quote": {"amount": 89, "currency": "EUR",
                                  "description": "Replace the USB-C charging port"}}),
    ]
    for n, (name, args) in enumerate(steps, 1):
        await _run(s, REPAIR, TECHNICIAN, f"demo-{n}", name, args)


async def seed(settings: Settings) -> list[str]:
    """Seed the demo rooms that are still empty; the names of those seeded."""
    s = build_services(settings)
    await s.log.open()
    await s.cluster.start()
    seeded = []
    try:
        for room, fill in ((QUEUE, _seed_queue), (REPAIR, _seed_repair)):
            if (await s.log.info(room)).head == 0:
                await fill(s)
                seeded.append(room)
    finally:
        await s.publisher.close()
        await s.cluster.close()
        await s.log.close()
    return seeded


def token_routes(tokens: Tokens, ttl: float) -> list[BaseRoute]:
    """The demo's token endpoint, both ways a page may ask, and the page configuration
    that names it:

    * ``GET /demo/token?user=&role=``;
    * ``POST /demo/token`` with ``{"page": "guest" | "dj" | "customer" | "technician",
      "user"?}`` (the page's person by default), as the web app's ``getToken`` sends it
      (clients/README.md, "Tokens for the pages");
    The demo's settings name it to the pages (``web_token_url``, served at
    ``/config.json``). Each answers ``{"token", "expires"}`` (Unix seconds), for the
    four page roles only.
    """

    def grant(user: str, role: str) -> Response:
        if not _USER_RE.fullmatch(user) or role not in {r.value for r in _PAGE_ROLES}:
            return error_response(RoomlogError(
                ErrorCode.BAD_FRAME, "give user (1-64 of A-Z a-z 0-9 . _ @ -) and role (guest, "
                "dj, customer or technician), or the page (guest, dj, customer or technician)"))
        now = time.time()
        token = tokens.issue(user, Role(role), ttl=ttl, now=now)
        return JSONResponse({"token": token, "expires": int(now + ttl)},
                            headers={"cache-control": "no-store"})

    @describe(Operation(
        "A token for a demo page's person (`roomlog demo` only)", tags=_TAGS,
        auth=Auth.NONE,
        params=(Param("user", "query", {"type": "string"}, "the user id", required=True),
                Param("role", "query", {"type": "string",
                                          "enum": sorted(r.value for r in _PAGE_ROLES)},
                      "a page role", required=True)),
        replies={200: json_reply("a token", ref("DemoToken"))}, errors=(400,)))
    async def get(request: Request) -> Response:
        return grant(request.query_params.get("user", ""), request.query_params.get("role", ""))

    @describe(Operation(
        "A token for a demo page, as the pages ask (`roomlog demo` only)", tags=_TAGS,
        auth=Auth.NONE,
        body=Body({"application/json": {
            "type": "object", "required": ["page"],
            "properties": {"page": {"type": "string"}, "user": {"type": "string"}}}}),
        replies={200: json_reply("a token", ref("DemoToken"))}, errors=(400,)))
    async def post(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        page = str(body.get("page", "")) if isinstance(body, dict) else ""
        who = _BY_PAGE.get(page.removesuffix(".html"))
        if who is None or not isinstance(body, dict):
            return grant("", "")
        user = body.get("user")
        return grant(user if isinstance(user, str) and user else who.user, who.role.value)

    return [Route(TOKEN_PATH, get, methods=["GET"]), Route(TOKEN_PATH, post, methods=["POST"])]


@dataclass
class Plan:
    """What ``roomlog serve`` runs for the demo."""

    settings: Settings
    routes: list[BaseRoute]
    announce: Callable[[str, int], None]


def links(base: str, tokens: Tokens, ttl: float) -> list[tuple[str, str]]:
    """(what, URL) of every demo page, each with a token of ``ttl`` seconds."""
    out = []
    for what, page, who, query in PAGES:
        token = tokens.issue(who.user, who.role, ttl=ttl)
        # In the fragment: never sent to a server, so never in an access log.
        out.append((what, f"{base}/{page}?{urlencode(query)}#{urlencode({'token': token})}"))
    return out


def prepare(settings: Settings, args: argparse.Namespace) -> Plan:
    """Make the demo's directory, seed it, and say how to serve and announce it."""
    home = Path(args.dir).resolve()
    if args.fresh:
        for name in ("roomlog.db", "roomlog.db-wal", "roomlog.db-shm"):
            (home / name).unlink(missing_ok=True)
        shutil.rmtree(home / "media", ignore_errors=True)
    home.mkdir(parents=True, exist_ok=True)
    secret = read_secret(settings.secret, str(home / ".roomlog-secret"))
    settings = settings.replace(
        database_url=f"sqlite+aiosqlite:///{home / 'roomlog.db'}", auto_migrate="auto",
        secret=secret.value, media_dir=str(home / "media"), redis_url="",
        web_token_url=TOKEN_PATH)
    seeded = asyncio.run(seed(settings))
    tokens = Tokens(secret.value)
    ttl = float(args.ttl)

    def announce(host: str, port: int) -> None:
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        base = f"http://{shown}:{port}"
        news = (f"seeded {' and '.join(seeded)}" if seeded
                else "kept the rooms of an earlier run (--fresh starts over)")
        days = ttl / 86400
        lines = [f"\nroomlog demo in {home}: {news}.",
                 f"Open these pages (their tokens are valid for {days:g} days):\n"]
        for what, url in links(base, tokens, ttl):
            lines += [f"  {what}", f"    {url}"]
        lines.append(f"\nEvery page: {base}/   Ctrl-C stops the demo.\n")
        print("\n".join(lines), flush=True, file=sys.stdout)

    return Plan(settings, token_routes(tokens, ttl), announce)
