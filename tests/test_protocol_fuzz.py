"""Property-based fuzzing of the protocol layer and the domain rooms' argument checks.

Pure: no event loop, no I/O (issue 10, "Tests and tools"). For any input:

* decoding a WebSocket payload (JSON or msgpack) gives a value or BAD_FRAME;
* parsing a client frame gives a typed frame or a coded ``RoomlogError``, never
  another exception;
* whatever is accepted can be stored and sent: ids are text every database's
  columns hold, ``data`` is JSON that round-trips and encodes in every wire
  format, command ``args`` encode, and what a domain room decides from them
  (events, notices, its state snapshot, its views) encodes too.

Hypothesis' settings keep the whole module within a few seconds in CI.
"""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

import msgpack
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roomlog.errors import RoomlogError
from roomlog.identity import Principal, Role
from roomlog.protocol import (
    MAX_ID_LENGTH,
    CommandFrame,
    Format,
    Message,
    Publish,
    decode,
    encode_data,
    frame_id,
    parse_command,
    parse_frame,
)
from roomlog.rooms import DOMAINS, parse_room
from roomlog.rooms.domain import Command, Domain, Event, Meta

FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
DEPTH = 8  # a small max_nesting_depth, so that generated values cross it often
MAX_BYTES = 4096

# Text with everything in it: NUL, control characters and lone surrogates too.
ANY_CHAR = st.characters(exclude_categories=())
TEXT = st.text(ANY_CHAR, max_size=12) | st.sampled_from(["", "a", "x" * 129, "a\x00b"])
ROOMS = st.sampled_from(["chat:lobby", "queue:q1", "repair:t1", "user:u1", "feed:f",
                         "repairs:all", "nope:x", "chat:", "chat:a b", 7, None])


def _json(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(leaves, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(TEXT, inner, max_size=4), max_leaves=20)


JSON_LEAVES = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
               | st.floats() | TEXT)
# What msgpack carries besides JSON: bytes, byte-string and integer keys, extensions.
MSGPACK_LEAVES = JSON_LEAVES | st.binary(max_size=8) | st.builds(
    msgpack.ExtType, st.integers(0, 127), st.binary(max_size=4))
VALUES = _json(JSON_LEAVES) | st.recursive(
    MSGPACK_LEAVES, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        TEXT | st.binary(max_size=4) | st.integers(-3, 3), inner, max_size=3), max_leaves=12)


def _deep(leaf: Any) -> Any:
    value = leaf
    for _ in range(DEPTH + 1):
        value = {"k": value}
    return value


def _frames(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Client frames of every type, each field anything from ``values`` or plausible."""
    fields = {
        "id": TEXT | values, "room": ROOMS | TEXT, "data": values | st.builds(_deep, values),
        "token": TEXT, "name": st.sampled_from(["request.submit", "ticket.create", ""]) | TEXT,
        "args": values | st.dictionaries(TEXT, values, max_size=3), "presence": values,
        "expected_seq": values, "since": values | st.fixed_dictionaries(
            {"epoch": TEXT, "seq": st.integers(-2, 2**64 - 1)}),
    }
    kinds = st.sampled_from(["connect", "subscribe", "unsubscribe", "publish", "ping",
                             "command", "presence"]) | TEXT
    return st.fixed_dictionaries({"type": kinds}, optional=fields) | values


FRAMES = _frames(VALUES)
JSON_FRAMES = _frames(_json(JSON_LEAVES))


def _column_text(value: str) -> bool:
    """What PostgreSQL's text takes (no NUL) and UTF-8 encodes (no lone surrogate)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in value


def _accepted(frame: Any) -> None:
    """What a parsed frame carries can be stored and sent."""
    ident = getattr(frame, "id", None)
    if ident is not None:
        assert 0 < len(ident) <= MAX_ID_LENGTH and _column_text(ident)
    room = getattr(frame, "room", None)
    if room is not None:
        assert len(str(room)) <= 200 and parse_room(str(room)) == room  # the rooms column
    if isinstance(frame, Publish):
        _stored_data(frame.data)
    if isinstance(frame, CommandFrame):
        _json_as_itself(frame.args)


def _json_as_itself(value: Any) -> None:
    """``value`` encodes to JSON that decodes to itself, no deeper than ``DEPTH``."""
    assert orjson.loads(orjson.dumps(value)) == value

    def depth(item: Any) -> int:
        if isinstance(item, dict):
            return 1 + max(map(depth, item.values()), default=0)
        if isinstance(item, list):
            return 1 + max(map(depth, item), default=0)
        return 0

    assert depth(value) <= DEPTH


def _stored_data(data: Any) -> None:
    """``data`` is stored as JSON text that decodes to itself, or refused with a code."""
    try:
        raw = encode_data(data, MAX_BYTES, max_depth=DEPTH)
    except RoomlogError:
        return
    _json_as_itself(data)
    assert orjson.loads(raw) == data
    message = Message("chat:x", 1, "e", 1, "u1", raw)
    as_json = orjson.loads(message.encoded(Format.JSON))
    assert msgpack.unpackb(message.encoded(Format.MSGPACK), raw=False) == as_json
    assert message.encoded(Format.SSE).startswith(b"id: 1\n")


def _packb(obj: Any) -> bytes:
    """msgpack as a hostile client may write it: lone surrogates too."""
    packed: bytes = msgpack.packb(obj, unicode_errors="surrogatepass")
    return packed


@FUZZ
@given(FRAMES)
def test_any_frame_parses_or_gets_a_coded_error(obj: Any) -> None:
    try:
        frame = parse_frame(obj, max_depth=DEPTH)
    except RoomlogError:
        ident = frame_id(obj)
        assert ident is None or _column_text(ident)  # what an error frame echoes
        return
    _accepted(frame)


def _received(fmt: Format, payload: str | bytes) -> None:
    """What the session does with a payload: decode, parse, use what was accepted."""
    try:
        frame = parse_frame(decode(fmt, payload), max_depth=DEPTH)
    except RoomlogError:
        return
    _accepted(frame)


@FUZZ
@given(st.binary(max_size=64) | st.builds(_packb, FRAMES))
def test_any_msgpack_payload_decodes_or_is_a_bad_frame(payload: bytes) -> None:
    _received(Format.MSGPACK, payload)


@FUZZ
@given(st.text(ANY_CHAR, max_size=64) | st.binary(max_size=64)
       | st.builds(json.dumps, JSON_FRAMES))  # NaN, lone surrogates: as json.dumps writes them
def test_any_json_payload_decodes_or_is_a_bad_frame(payload: str | bytes) -> None:
    _received(Format.JSON, payload)


@FUZZ
@given(VALUES | st.builds(_deep, VALUES))
def test_data_is_stored_as_itself_or_refused_with_a_code(data: Any) -> None:
    _stored_data(data)


@FUZZ
@given(st.dictionaries(TEXT, VALUES, max_size=4) | st.builds(_deep, VALUES) | VALUES,
       TEXT | VALUES)
def test_command_args_are_json_or_invalid_args(args: Any, ident: Any) -> None:
    try:
        frame = parse_command({"name": "request.submit", "args": args, "id": ident},
                              parse_room("queue:q1"), max_depth=DEPTH)
    except RoomlogError:
        return
    _accepted(frame)


# -- the domain rooms: validators, decisions and the fold ------------------------

PEOPLE = [Principal("g1", Role.GUEST), Principal("dj1", Role.DJ),
          Principal("cust1", Role.CUSTOMER), Principal("tech1", Role.TECHNICIAN),
          Principal("adm", Role.ADMIN), Principal("svc", Role.SERVICE)]
def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` three times in four: enough commands pass their checks to reach the
    deciders and the fold, and enough fail to test the checks."""
    return st.integers(0, 3).flatmap(lambda i: good if i else bad)


def pick(good: list[Any], bad: list[Any]) -> st.SearchStrategy[Any]:
    return mostly(st.sampled_from(good), st.sampled_from(bad) | VALUES)


WORDS = mostly(st.sampled_from(["Song", "Phone", "Cracked screen", " padded "]),
               TEXT | st.sampled_from(["  ", "x" * 5000]))
IDS = pick(["r1", "r2", "r3"], ["r9", ""])
# Per argument: values the checks accept, and values they must refuse.
ARG = {
    "song_id": WORDS, "title": WORDS, "artist": WORDS, "note": WORDS | st.none(),
    "request_id": IDS, "reason": WORDS | st.none(), "internal_reason": WORDS | st.none(),
    "action": pick(["accept", "veto"], ["x"]),
    "request_ids": mostly(st.lists(st.sampled_from(["r1", "r2", "r3"]), min_size=1,
                                   max_size=3, unique=True), st.lists(IDS) | VALUES),
    "position": pick([1, 2, 3], [0, -1, 10_001]),
    "request_cap_per_hour": pick([1, 50, 1000], [0, 1001, True]),
    "max_active_per_guest": pick([1, 50], [0, 51]), "submit_rate": pick([1, 60], [0, 61]),
    "voting": pick([True, False], [1]),
    "customer_id": pick(["cust1", "c2"], ["bad id", "x" * 129]),
    "device": WORDS, "problem": WORDS, "caption": WORDS, "text": WORDS, "item": WORDS,
    "technicians": pick([["tech1"], ["tech1", "tech2"], []], [["all"], ["a b"], ["t"] * 11]),
    "internal": mostly(st.dictionaries(st.sampled_from(["shelf", "bin", "x"]), VALUES,
                                       max_size=3), VALUES),
    "status": pick(["received", "diagnosing", "awaiting_approval", "in_repair", "on_hold",
                    "cancelled", "ready_for_pickup", "picked_up"], ["x"]),
    "quote": mostly(st.fixed_dictionaries(
        {"amount": st.sampled_from([1, 2.5, 999]), "currency": st.sampled_from(["EUR", "usd"])},
        optional={"description": WORDS}), st.fixed_dictionaries(
        {"amount": st.sampled_from([0, -1, float("nan"), 10**12, True]),
         "currency": st.sampled_from(["eu", "US$"])}) | VALUES),
    "percent": pick([0, 50, 100], [-1, 101]),
    "at": mostly(st.integers(5_001, 2**53) | st.none(), st.integers(-1, 5_000)),
    "category": pick(["before", "after", "part"], ["x"]),
    "url": pick(["https://example.org/p.png"], ["ftp://x/y", "https://a b"]),
    "upload_id": pick(["u1"], ["../x"]),
    "visibility": pick(["customer", "internal"], ["x"]),
    "priority": pick(["low", "urgent"], ["x"]),
    "passed": pick([True, False], [1]), "required": pick([True, False], [1]),
}
COMMANDS = {
    "queue": {"request.submit": ["song_id", "title", "artist", "note"],
              "request.cancel": ["request_id"], "request.vote": ["request_id"],
              "request.unvote": ["request_id"], "request.accept": ["request_id"],
              "request.veto": ["request_id", "reason"],
              "request.batch": ["action", "request_ids", "reason"],
              "request.play": ["request_id"], "request.played": ["request_id"],
              "queue.reorder": ["request_id", "position"], "queue.open": [],
              "queue.close": [],
              "queue.settings": ["request_cap_per_hour", "max_active_per_guest",
                                 "submit_rate", "voting"]},
    "repair": {"ticket.create": ["customer_id", "device", "problem", "technicians",
                                 "internal"],
               "ticket.assign": ["technicians"],
               "status.set": ["status", "reason", "internal_reason", "quote"],
               "quote.approve": [], "quote.decline": ["reason"],
               "milestone.add": ["title", "percent"], "eta.set": ["at"],
               "photo.add": ["category", "caption", "url", "upload_id", "visibility"],
               "qa.record": ["item", "passed", "note", "required"],
               "note.add": ["text", "priority", "visibility"]},
}


# Who usually runs each command (the rest of the time: anyone).
USUAL = {"request.submit": "g1", "request.cancel": "g1", "request.vote": "g1",
         "request.unvote": "g1", "quote.approve": "cust1", "quote.decline": "cust1",
         "ticket.create": "adm", "ticket.assign": "adm", "note.add": "tech1"}


def _actor(draw: st.DrawFn, name: str, kind: str) -> Principal:
    usual = USUAL.get(name, "dj1" if kind == "queue" else "tech1")
    if draw(st.integers(0, 3)) > 0:
        return next(p for p in PEOPLE if p.user == usual)
    return draw(st.sampled_from(PEOPLE))


@st.composite
def commands(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    """A command body: mostly a known command with its own arguments, some of them
    wrong; sometimes unknown names, unknown or missing arguments, anything at all."""
    known = draw(st.integers(0, 7)) > 0
    name = draw(st.sampled_from(sorted(COMMANDS[kind])) if known else TEXT)
    args = {key: draw(ARG[key]) for key in COMMANDS[kind].get(name, [])
            if draw(st.integers(0, 7)) > 0}  # now and then one is missing
    if draw(st.integers(0, 4)) == 0:
        args |= draw(st.dictionaries(TEXT | st.sampled_from(sorted(ARG)), VALUES, max_size=2))
    return {"name": name, "id": "c1", "args": args, "actor": _actor(draw, name, kind)}


def _run(domain: Domain[Any], state: Any, actor: Principal, name: str,
         args: dict[str, Any], now_ms: int) -> None:
    decision = domain.decide(state, Command(name, args), actor, now_ms)
    orjson.dumps(decision.result)
    for seq, event in enumerate(decision.events, start=100):
        stored = Event.from_data(orjson.loads(orjson.dumps(event.to_data())))
        for notice in domain.apply(state, stored, Meta(actor.user, seq, now_ms)):
            orjson.dumps(notice.data)
    snapshot = orjson.dumps(domain.dump(state))  # what the log stores of the state
    domain.load(orjson.loads(snapshot))
    for viewer in PEOPLE:
        orjson.dumps(domain.view(state, viewer))


def _prepared(kind: str) -> Any:
    """A room with something in it, so commands get past "nothing to act on"."""
    domain = DOMAINS[kind]
    if kind == "queue":
        state = domain.initial("q1")
        for i, guest in enumerate(["g1", "g2", "g3"]):
            _run(domain, state, Principal(guest, Role.GUEST), "request.submit",
                 {"song_id": f"s{i}", "title": "T", "artist": "A"}, 1_000 + i)
        _run(domain, state, PEOPLE[1], "request.accept", {"request_id": "r1"}, 2_000)
        return state
    state = domain.initial("t1")
    _run(domain, state, PEOPLE[4], "ticket.create", {
        "customer_id": "cust1", "device": "Phone", "problem": "Cracked",
        "technicians": ["tech1"], "internal": {"shelf": 3}}, 1_000)
    return state


PREPARED = {kind: _prepared(kind) for kind in DOMAINS}


@FUZZ
@given(st.sampled_from(sorted(DOMAINS)), st.booleans(), st.data())
def test_domain_commands_decide_or_get_a_coded_error_and_store(kind: str, fresh: bool,
                                                               data: st.DataObject) -> None:
    domain = DOMAINS[kind]
    state = domain.initial("x") if fresh else copy.deepcopy(PREPARED[kind])
    for _ in range(data.draw(st.integers(1, 4))):  # a few in a row reach further states
        body = data.draw(commands(kind))
        with contextlib.suppress(RoomlogError):  # refused: a coded error, nothing changed
            frame = parse_command(body, parse_room(f"{kind}:x"), max_depth=DEPTH)
            _run(domain, state, body["actor"], frame.name, frame.args, 5_000)
