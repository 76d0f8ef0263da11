"""CORS over real sockets: none by default; with ``cors_origins`` a listed origin's
preflight is answered and its answers are readable (with the exposed headers), an
unlisted one gets neither, and no answer ever allows credentials."""

from __future__ import annotations

import httpx

from roomlog.identity import Role
from tests.e2e.conftest import MakeServer
from tests.e2e.support import ROOT, Server, bearer, unique_room

PAGE = "http://page.example:8080"
OTHER = "https://elsewhere.example"


def _preflight(origin: str, method: str = "POST",
               headers: str = "authorization, content-type") -> dict[str, str]:
    return {"origin": origin, "access-control-request-method": method,
            "access-control-request-headers": headers}


async def test_no_origin_is_allowed_by_default(server: Server, http: httpx.AsyncClient) -> None:
    room = unique_room()
    url = f"{server.base}/v1/rooms/{room}/messages"
    reply = await http.options(url, headers=_preflight(PAGE))
    assert reply.status_code == 400 and "origin" in reply.text
    assert "access-control-allow-origin" not in reply.headers
    read = await http.get(url, headers={"origin": PAGE, **bearer()})
    assert read.status_code == 200
    assert "access-control-allow-origin" not in read.headers


async def test_a_listed_origin_is_allowed(make_server: MakeServer,
                                          http: httpx.AsyncClient) -> None:
    srv = await make_server(cors_origins=f"{PAGE}, http://localhost:3000", cors_max_age=120)
    room = unique_room()
    url = f"{srv.base}/v1/rooms/{room}/messages"

    reply = await http.options(url, headers=_preflight(PAGE))
    assert reply.status_code == 200
    assert reply.headers["access-control-allow-origin"] == PAGE
    allowed = {h.strip().lower() for h in reply.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "last-event-id", "x-request-id"} <= allowed
    assert "DELETE" in reply.headers["access-control-allow-methods"]
    assert reply.headers["access-control-max-age"] == "120"
    assert "access-control-allow-credentials" not in reply.headers
    assert reply.headers["x-request-id"]

    sent = await http.post(url, json={"id": "c1", "data": {"n": 1}},
                           headers={"origin": PAGE, **bearer("alice", Role.GUEST)})
    assert sent.status_code == 201
    assert sent.headers["access-control-allow-origin"] == PAGE
    exposed = sent.headers["access-control-expose-headers"].lower()
    assert {"x-request-id", "retry-after", "www-authenticate"} <= {
        h.strip() for h in exposed.split(",")}
    assert "access-control-allow-credentials" not in sent.headers

    refused = await http.get(url, headers={"origin": PAGE})  # errors are readable too
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == PAGE


async def test_an_unlisted_origin_is_not(make_server: MakeServer,
                                         http: httpx.AsyncClient) -> None:
    srv = await make_server(cors_origins=PAGE)
    url = f"{srv.base}/v1/rooms/{unique_room()}/commands"
    for asked in (_preflight(OTHER), _preflight(PAGE, method="CONNECT"),
                  _preflight(PAGE, headers="authorization, x-secret")):
        reply = await http.options(url, headers=asked)
        assert reply.status_code == 400, asked
        assert reply.headers.get("access-control-allow-origin") in (None, PAGE)
    read = await http.get(f"{srv.base}/health/live", headers={"origin": OTHER})
    assert read.status_code == 200 and "access-control-allow-origin" not in read.headers


async def test_any_origin(make_server: MakeServer, http: httpx.AsyncClient) -> None:
    srv = await make_server(cors_origins="*")
    url = f"{srv.base}/v1/rooms/{unique_room()}/messages"
    reply = await http.options(url, headers=_preflight(OTHER))
    assert reply.status_code == 200 and reply.headers["access-control-allow-origin"] == "*"
    read = await http.get(url, headers={"origin": OTHER, **bearer()})
    assert read.status_code == 200 and read.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in read.headers


async def test_the_hub_s_own_pages_pass_untouched(make_server: MakeServer,
                                                  http: httpx.AsyncClient) -> None:
    """A same-origin request (module scripts and POSTs carry Origin too) gets no CORS
    header and no ``Vary: Origin``: the pages' service worker cache honours Vary."""
    srv = await make_server(cors_origins=PAGE, web_dir=str(ROOT / "clients"))
    own = {"origin": srv.base}
    for reply in (await http.get(f"{srv.base}/guest.js", headers=own),
                  await http.get(f"{srv.base}/v1/rooms/{unique_room()}/messages",
                                 headers={**own, **bearer()})):
        assert reply.status_code == 200
        assert "origin" not in reply.headers.get("vary", "").lower()
        assert not any(h.startswith("access-control-") for h in reply.headers)
