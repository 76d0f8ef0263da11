"""Logging: one format for the app and uvicorn, ids that follow one client, no secrets.

* :func:`logging_config` is the ``logging.config.dictConfig`` of every ``roomlog``
  command: ``text`` (one readable line) or ``json`` (one JSON object per line), for
  the app's loggers and uvicorn's error and access logs alike. ``roomlog serve``
  hands it to uvicorn as ``log_config``, so the worker of ``--reload`` gets it too.
* Two context variables name who a record is about: :data:`request_id` (one HTTP
  request or WebSocket handshake: ``X-Request-Id``) and :data:`conn_id` (one
  WebSocket session or SSE stream: the ``conn`` of presence and admin disconnects).
  The edges set them (:func:`bind`); tasks a connection starts inherit them, so no
  call passes them along. Shared work started on a client's behalf (a room's group
  commit) runs in :func:`detached` context, so it is not blamed on that client.
* :func:`redact` runs over every formatted record, traceback included: ``token=``
  and similar query parameters, bearer credentials, anything shaped like a JWT and
  the password of a URL never reach a log, whatever logger wrote them.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
from typing import Any

__all__ = [
    "FORMATS",
    "JsonFormatter",
    "TextFormatter",
    "bind",
    "conn_id",
    "detached",
    "logging_config",
    "redact",
    "request_id",
]

FORMATS = ("text", "json")

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "roomlog_request_id", default=None)
conn_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "roomlog_conn_id", default=None)


def bind(*, request: str | None = None, conn: str | None = None) -> None:
    """Name the request and/or connection of what runs from here on (in this task
    and the tasks it creates)."""
    if request is not None:
        request_id.set(request)
    if conn is not None:
        conn_id.set(conn)


def detached() -> contextvars.Context:
    """A copy of the current context naming no request or connection: pass it as
    ``create_task(..., context=detached())`` for shared work a client only set off."""
    context = contextvars.copy_context()
    context.run(request_id.set, None)
    context.run(conn_id.set, None)
    return context


# ---------------------------------------------------------------------------
# Redaction

_SECRET_PARAMS = r"(?:access_)?token|secret|password|passwd|api_?key|key|signature|sig|code"
_REDACTIONS = [
    # ?token=... / &secret=... in URLs, access-log paths and messages
    (re.compile(rf"(?i)([?&;](?:{_SECRET_PARAMS})=)[^&;\s\"'#]*"), r"\1[redacted]"),
    # Authorization: Bearer <credential> (and Basic)
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]+"), r"\1\2[redacted]"),
    # anything shaped like a JWT, wherever it appears
    (re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "[redacted-jwt]"),
    # scheme://user:password@host
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s/]+@"), r"\1[redacted]@"),
    # Standard Webhooks secrets
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=]+"), "whsec_[redacted]"),
]


def redact(text: str) -> str:
    """``text`` without credentials: see the module docstring for what is removed."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


# ---------------------------------------------------------------------------
# Formatters


def _ids(record: logging.LogRecord) -> dict[str, str]:
    ids = {}
    req, conn = request_id.get(), conn_id.get()
    if req is not None:
        ids["request_id"] = req
    if conn is not None:
        ids["conn"] = conn
    return ids


class TextFormatter(logging.Formatter):
    """``2026-12-05 17:03:10,958 INFO roomlog.drain: message [req=… conn=…]``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = _ids(record)
        if ids:
            tag = " ".join(f"{'req' if k == 'request_id' else k}={v}" for k, v in ids.items())
            first, newline, rest = line.partition("\n")
            line = f"{first} [{tag}]{newline}{rest}"
        return redact(line)


# uvicorn's access record: '%s - "%s %s HTTP/%s" %d' % (client, method, path, http, status)
_ACCESS_FIELDS = ("client", "method", "path", "http", "status")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (ISO 8601, UTC), ``level``, ``logger``,
    ``msg``, ``request_id`` and ``conn`` when known, ``exc`` with the traceback;
    uvicorn's access lines also carry ``client``, ``method``, ``path``, ``http`` and
    ``status``."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        entry: dict[str, Any] = {
            "ts": f"{ts}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        entry.update(_ids(record))
        if (record.name == "uvicorn.access" and isinstance(record.args, tuple)
                and len(record.args) == len(_ACCESS_FIELDS)):
            for name, value in zip(_ACCESS_FIELDS, record.args, strict=True):
                entry[name] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc"] = redact(record.exc_text)
        return json.dumps(entry, ensure_ascii=False, default=str)


def logging_config(level: str = "info", fmt: str = "text") -> dict[str, Any]:
    """The ``dictConfig`` of a ``roomlog`` process: every record (the app's, uvicorn's,
    libraries') through one handler on stderr in format ``fmt`` at ``level``."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: choose one of {', '.join(FORMATS)}")
    formatter = "roomlog.logs.JsonFormatter" if fmt == "json" else "roomlog.logs.TextFormatter"
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"roomlog": {"()": formatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "roomlog",
                                "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            # uvicorn's own handlers would print a second copy in a second format
            name: {"handlers": [], "propagate": True, "level": level}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
        } | {"alembic": {"level": "WARNING"}},  # its INFO at every start is noise
    }
