"""Every route of the app is in ``/openapi.json``, described next to its code.

A route added without an :class:`~roomlog.openapi.operation.Operation` fails
``test_every_route_is_described`` with its method and path: add
``@describe(Operation(...))`` to its endpoint (docs/openapi.md, "Describing an
endpoint"). The document itself is checked against the OpenAPI 3.1 meta-schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from roomlog.app import create_app
from roomlog.auth import Tokens
from roomlog.demo import token_routes
from roomlog.openapi.generate import document, endpoints, undocumented
from roomlog.openapi.operation import Operation, describe
from roomlog.settings import Settings
from tests.conftest import SECRET
from tests.e2e.support import ROOT


def _app(tmp_path: Path, **extra: Any) -> Starlette:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/x.db", secret=SECRET,
                        web_dir=str(ROOT / "clients"), media_dir=str(tmp_path / "media"))
    return create_app(settings, **extra)


@pytest.fixture
def app(tmp_path: Path) -> Starlette:
    """The app with everything it can serve: the web app and the demo's token routes."""
    return _app(tmp_path, extra_routes=token_routes(Tokens(SECRET), 60.0))


def test_every_route_is_described(app: Starlette) -> None:
    assert undocumented(app.routes) == [], (
        "add @describe(Operation(...)) to these endpoints (docs/openapi.md)")


def test_a_route_without_a_description_is_named(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    async def secret_feature(request: Request) -> Response:
        return Response()

    app = _app(tmp_path, extra_routes=[Route("/v1/new/{thing:int}", secret_feature,
                                             methods=["GET", "POST"])])
    assert undocumented(app.routes) == ["GET /v1/new/{thing}", "POST /v1/new/{thing}"]
    assert "GET /v1/new/{thing}, POST /v1/new/{thing}" in caplog.text  # said at start
    doc = document(app.routes, title="t", version="0", description="")
    assert "/v1/new/{thing}" not in doc["paths"]


def test_an_operation_per_method(tmp_path: Path) -> None:
    @describe(Operation("read it", method="GET"), Operation("change it", method="PUT"))
    async def both(request: Request) -> Response:
        return Response()

    app = _app(tmp_path, extra_routes=[Route("/v1/thing", both, methods=["GET", "PUT"])])
    doc = document(app.routes, title="t", version="0", description="")
    assert doc["paths"]["/v1/thing"]["get"]["summary"] == "read it"
    assert doc["paths"]["/v1/thing"]["put"]["summary"] == "change it"


def test_the_document_is_valid_openapi(app: Starlette) -> None:
    doc = document(app.routes, title="roomlog", version="0", description="")
    schema = schemathesis.openapi.from_dict(doc)
    schema.validate()  # the OpenAPI 3.1 meta-schema
    described = {(e.method, e.path) for e in endpoints(app.routes)}
    listed = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    assert listed == described
    for path, item in doc["paths"].items():
        for method, op in item.items():
            names = {p["name"] for p in op.get("parameters", ()) if p["in"] == "path"}
            assert names == set(_template_names(path)), (method, path)
            assert op["responses"] and op["summary"], (method, path)


def test_tokens_add_the_auth_errors(app: Starlette) -> None:
    doc = document(app.routes, title="roomlog", version="0", description="")
    publish = doc["paths"]["/v1/rooms/{room}/messages"]["post"]
    assert {"401", "403", "201", "200"} <= set(publish["responses"])
    assert publish["security"] == [{"bearer": []}]
    live = doc["paths"]["/health/live"]["get"]
    assert live["security"] == [] and "401" not in live["responses"]


def _template_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]
