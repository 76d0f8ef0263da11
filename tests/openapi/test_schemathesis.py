"""Schemathesis against ``/openapi.json`` as a real ``roomlog serve`` serves it: for
every operation, generated requests (valid and invalid ones) never get a server error,
and every answer matches the description (status, content type, headers, body schema).

Requests carry an admin token, so the checks reach past authentication; an SSE request
gets a token that expires within a fraction of a second, so its stream ends by itself
(with its ``error`` event) and the answer can be read whole. A second run sends no token
at all: every operation then answers as its description says for that too.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from roomlog.identity import Role
from tests.conftest import SECRET
from tests.e2e.support import ROOT, Server, issue_token

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
SSE = "/v1/rooms/{room}/events"
FUZZ = settings(max_examples=20, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("openapi"), web_dir=str(ROOT / "clients"),
                 max_wait=0.5)
    srv.start()
    yield srv
    srv.stop()
    srv.assert_clean_log()


@pytest.fixture(scope="module")
def served(hub: Server) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{hub.base}/openapi.json")


ADMIN = {"authorization": f"Bearer {issue_token('openapi-admin', Role.ADMIN)}"}


def _fleeting() -> dict[str, str]:
    """An admin token that expires in 0.3 s: an SSE stream opened with it ends then."""
    now = time.time()
    token = jwt.encode({"sub": "openapi-admin", "role": "admin", "exp": now + 0.3,
                        "jti": secrets.token_hex(8)}, SECRET, algorithm="HS256")
    return {"authorization": f"Bearer {token}"}


def _fuzz(served: schemathesis.BaseSchema, hub: Server, mode: GenerationMode,
          examples: int, *, token: bool) -> None:
    """Every operation, ``examples`` generated cases each; the first failure fails the
    test, naming the operation and the case (schemathesis prints a curl line)."""
    operations = [result.ok() for result in served.get_all_operations()]
    assert len(operations) > 20
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and not _has_input(operation.definition.raw):
            continue  # nothing to get wrong
        @settings(FUZZ, max_examples=examples)
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case: schemathesis.Case) -> None:
            headers = None
            if token:
                headers = _fleeting() if case.operation.path == SSE else ADMIN
            else:
                for name in list(case.headers or {}):
                    if name.lower() == "authorization":
                        del case.headers[name]
                if case.query:
                    case.query.pop("token", None)
            case.call_and_validate(base_url=hub.base, headers=headers, checks=CHECKS,
                                   timeout=15)

        try:
            check()
        except BaseException as exc:
            exc.add_note(f"operation: {operation.label} ({mode.value}, token: {token})")
            raise


def _has_input(raw: dict[str, Any]) -> bool:
    return bool(raw.get("parameters") or raw.get("requestBody"))


def test_valid_requests_get_answers_as_described(served: schemathesis.BaseSchema,
                                                 hub: Server) -> None:
    _fuzz(served, hub, GenerationMode.POSITIVE, 20, token=True)


def test_invalid_requests_get_coded_errors_as_described(served: schemathesis.BaseSchema,
                                                         hub: Server) -> None:
    _fuzz(served, hub, GenerationMode.NEGATIVE, 15, token=True)


def test_requests_without_a_token_get_answers_as_described(
        served: schemathesis.BaseSchema, hub: Server) -> None:
    _fuzz(served, hub, GenerationMode.POSITIVE, 4, token=False)


def test_the_served_description_is_the_generated_one(hub: Server, tmp_path: Path) -> None:
    import httpx

    served = httpx.get(f"{hub.base}/openapi.json", timeout=15).json()
    assert served["openapi"] == "3.1.0"
    assert "/v1/rooms/{room}/messages" in served["paths"]
    assert {"get", "post"} <= set(served["paths"]["/v1/rooms/{room}/messages"])
