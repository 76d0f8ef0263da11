"""The JSON Schemas shared by the HTTP endpoints (``components/schemas`` of
``/openapi.json``) and the small helpers endpoints use to describe themselves. Pure.

A schema says what every answer of that kind holds (the fields a client may rely on,
with their types); answers may carry more fields (``additionalProperties`` is left
open) so that adding a field never breaks a client. ``docs/protocol.md`` explains the
meaning of each field.
"""

from __future__ import annotations

from typing import Any

from roomlog.errors import ErrorCode
from roomlog.identity import Role
from roomlog.openapi.operation import Param, Reply, Schema
from roomlog.rooms import KINDS

__all__ = ["COMPONENTS", "ROOM", "json_reply", "obj", "ref"]


def ref(name: str) -> Schema:
    """A reference to ``components/schemas/<name>``."""
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: dict[str, Schema], optional: dict[str, Schema] | None = None,
        description: str = "") -> dict[str, Any]:
    """An object with these required (and optional) properties; others allowed."""
    schema: dict[str, Any] = {"type": "object", "required": list(required),
                              "properties": {**required, **(optional or {})}}
    if description:
        schema["description"] = description
    return schema


def json_reply(description: str, schema: Schema, **headers: str) -> Reply:
    """A JSON answer; ``headers`` by name (``retry_after="..."`` is ``Retry-After``)."""
    return Reply(description, {"application/json": schema},
                 {name.replace("_", "-").title(): text for name, text in headers.items()})


STRING: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
SEQ: Schema = {"type": "integer", "minimum": 0}
MS: Schema = {"type": "integer", "description": "ms since the Unix epoch"}
NULLABLE_STRING: Schema = {"type": ["string", "null"]}
NULLABLE_MS: Schema = {"type": ["integer", "null"], "description": "ms since the Unix epoch"}
EPOCH: Schema = {"type": "string", "description": "names this room's log; a new one after "
                                                  "a reset"}
ROLE: Schema = {"type": "string", "enum": [r.value for r in Role]}

_ROOM_PATTERN = f"^({'|'.join(KINDS)}):[A-Za-z0-9][A-Za-z0-9._@-]{{0,127}}$"
ROOM = Param("room", "path", {"type": "string", "pattern": _ROOM_PATTERN},
             f"the room, `kind:id`, of kind {', '.join(KINDS)} (another kind is 400 "
             "INVALID_ROOM)", required=True)

_PRINCIPAL = obj({"user": STRING, "role": ROLE})

_BAN = obj({"id": INT, "user": NULLABLE_STRING, "role": {"type": ["string", "null"]},
            "jti": NULLABLE_STRING, "reason": STRING, "by": _PRINCIPAL, "created": MS,
            "until": NULLABLE_MS, "lifted": NULLABLE_MS,
            "lifted_by": {"oneOf": [{"type": "null"}, _PRINCIPAL]},
            "status": {"type": "string", "enum": ["active", "expired", "lifted"]}})

_FRAME = obj({"type": {"type": "string", "enum": ["message", "reset"]}},
             description="a frame as a WebSocket subscriber gets it (docs/protocol.md): a "
                         "`message`, or one `reset`")

COMPONENTS: dict[str, Schema] = {
    "Error": obj({"error": obj(
        {"code": {"type": "string", "enum": [c.value for c in ErrorCode]},
         "message": STRING},
        {"retry_after": {"type": "number", "description": "seconds; also `Retry-After`"},
         "details": {"type": "object"}})},
        description="every error: a code from docs/protocol.md#error-codes and a message"),
    "Page": obj({"room": STRING, "epoch": EPOCH, "head": SEQ, "trimmed": SEQ, "next": SEQ,
                 "frames": {"type": "array", "items": _FRAME}},
                description="a page of the log: `next` is the `after` of the next request"),
    "PublishBody": obj({"id": {"type": "string", "minLength": 1, "maxLength": 128},
                        "data": {"description": "any JSON value"}}),
    "Published": obj({"room": STRING, "id": STRING, "seq": SEQ, "epoch": EPOCH,
                      "duplicate": {"type": "boolean"}}),
    "CommandBody": obj({"name": STRING, "id": {"type": "string", "minLength": 1,
                                               "maxLength": 128}},
                       {"args": {"type": "object"}, "expected_seq": SEQ}),
    "CommandAck": obj({"type": {"const": "ack"}, "id": STRING, "room": STRING,
                       "epoch": EPOCH, "seq": {"type": ["integer", "null"]},
                       "seqs": {"type": "array", "items": SEQ},
                       "duplicate": {"type": "boolean"}}, {"result": {}}),
    "RoomState": obj({"room": STRING, "epoch": EPOCH, "seq": SEQ, "state": {"type": "object"}}),
    "RoomInfo": obj({"room": STRING, "epoch": EPOCH, "head": SEQ, "trimmed": SEQ,
                     "subscribers": SEQ}),
    "RoomReset": obj({"room": STRING, "epoch": EPOCH, "head": SEQ}),
    "Presence": obj({"room": STRING, "connections": SEQ, "users": {
        "type": "array", "items": obj({"user": STRING, "role": ROLE, "connections": SEQ})}}),
    "Analytics": obj({"room": STRING}, description="docs/queue.md: requests per hour, "
                                                   "acceptance, waits, top songs and guests"),
    "RepairStats": {"type": "object", "description": "docs/repair.md: time in each status, "
                                                     "repair durations, tickets per technician"},
    "Upload": obj({"room": STRING, "upload_id": STRING, "bytes": SEQ, "url": STRING}),
    "DisconnectBody": obj({}, {"user": STRING, "conn": STRING,
                               "code": {"type": "integer", "enum": [4003, 4001, 1001]},
                               "reason": STRING},
                          description="`user` or `conn`"),
    "Disconnected": obj({"closed_here": SEQ, "broadcast": {"type": "boolean"}}),
    "BanBody": obj({}, {"user": STRING, "role": ROLE, "jti": STRING, "reason": STRING,
                        "duration": {"type": "number", "exclusiveMinimum": 0},
                        "until": MS},
                   description="`user` (optionally with `role`) or `jti`; `duration` or "
                               "`until` or neither (until lifted)"),
    "Ban": _BAN,
    "BanCreated": obj({"ban": ref("Ban"), "closed_here": SEQ}),
    "BanOne": obj({"ban": ref("Ban")}),
    "BanList": obj({"bans": {"type": "array", "items": ref("Ban")},
                    "next": {"type": ["integer", "null"]}}),
    "Live": obj({"status": {"const": "ok"}}),
    "Ready": obj({"status": {"type": "string", "enum": ["ok", "degraded", "unavailable",
                                                       "draining"]},
                  "bus": {"type": "string", "enum": ["ok", "degraded"]},
                  "instance": STRING, "connections": SEQ, "rooms": SEQ},
                 {"database": STRING}),
    "WebConfig": obj({"token_url": NULLABLE_STRING}),
    "DemoToken": obj({"token": STRING, "expires": {"type": "number"}}),
}
