"""Log formatting: redaction of credentials, the ids of the context, JSON lines."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import sys

import pytest

from roomlog import logs

JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSIsImV4cCI6MX0."
       "dOQw0bdIj8Cz9fy8ieH9Zj1wLjltM4MqjItH7zpM2TE")


@pytest.mark.parametrize("text, secret", [
    (f'127.0.0.1:1 - "GET /v1/rooms/chat:a/events?token={JWT} HTTP/1.1" 200', JWT),
    ('"GET /guest.html?room=queue:demo&token=opaque-credential-123&x=1 HTTP/1.1"',
     "opaque-credential-123"),
    ("GET /x?access_token=abc.def&secret=s3cr3t-value", "s3cr3t-value"),
    ("headers: {'authorization': 'Bearer sometoken_value-1'}", "sometoken_value-1"),
    (f"a token in a message: {JWT}!", JWT),
    ("log postgresql+asyncpg://app:hunter2-pass@db:5432/roomlog", "hunter2-pass"),
    ("redis://:redis-pass-9@cache:6379/0", "redis-pass-9"),
    ("secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw is in use", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
])
def test_redact_removes_credentials(text: str, secret: str) -> None:
    redacted = logs.redact(text)
    assert secret not in redacted and "[redacted" in redacted, redacted


def test_redact_keeps_what_is_not_a_credential() -> None:
    line = ('127.0.0.1:5 - "GET /v1/rooms/chat:a/messages?after=3&wait=30 HTTP/1.1" 200 '
            "send 'Authorization: Bearer <token>'")
    assert logs.redact(line) == line


def record(msg: str, *args: object, name: str = "roomlog.test",
           exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError(f"bad token {JWT}")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, args, exc_info)


def in_context(fn: object, *, request: str | None = None, conn: str | None = None) -> str:
    def run() -> str:
        logs.bind(request=request, conn=conn)
        return fn()  # type: ignore[operator,no-any-return]
    return contextvars.copy_context().run(run)


def test_text_lines_name_the_request_and_connection() -> None:
    formatter = logs.TextFormatter()
    line = in_context(lambda: formatter.format(record("hello %s", "you")),
                      request="r-1", conn="i.7")
    assert line.endswith("WARNING roomlog.test: hello you [req=r-1 conn=i.7]")
    assert formatter.format(record("plain")).endswith("WARNING roomlog.test: plain")


def test_json_lines_are_one_object_with_ids_and_no_secret() -> None:
    formatter = logs.JsonFormatter()
    line = in_context(lambda: formatter.format(record("oops %s", JWT, exc=True)),
                      request="r-2", conn="i.9")
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "warning" and entry["logger"] == "roomlog.test"
    assert entry["request_id"] == "r-2" and entry["conn"] == "i.9"
    assert entry["ts"].endswith("Z") and "ValueError" in entry["exc"]
    assert JWT not in line


def test_json_access_lines_carry_their_fields() -> None:
    access = record('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET",
                    f"/guest.html?token={JWT}", "1.1", 200, name="uvicorn.access")
    entry = json.loads(logs.JsonFormatter().format(access))
    assert entry["method"] == "GET" and entry["status"] == 200
    assert entry["path"] == "/guest.html?token=[redacted]"
    assert JWT not in json.dumps(entry)


async def test_detached_context_names_nobody() -> None:
    logs.bind(request="r-3", conn="i.1")
    seen: list[tuple[str | None, str | None]] = []

    async def work() -> None:
        seen.append((logs.request_id.get(), logs.conn_id.get()))

    await asyncio.get_running_loop().create_task(work(), context=logs.detached())
    await asyncio.get_running_loop().create_task(work())
    assert seen == [(None, None), ("r-3", "i.1")]


def test_logging_config_refuses_unknown_formats() -> None:
    with pytest.raises(ValueError, match="text, json"):
        logs.logging_config("info", "xml")
