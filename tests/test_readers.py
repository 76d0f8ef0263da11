"""What each reader sees: lenses and gates from the domain rules (pure)."""

from __future__ import annotations

from roomlog.identity import Principal, Role
from roomlog.protocol import Message
from roomlog.readers import gate, lens

TECH, CUSTOMER = Principal("t1", Role.TECHNICIAN), Principal("c1", Role.CUSTOMER)


def message(seq: int, raw: bytes) -> Message:
    return Message("repair:r1", seq, "e", 1, "t1", raw)


def test_only_private_rooms_have_lenses_and_staff_take_the_fast_path() -> None:
    assert lens("queue:q1", CUSTOMER) is None and lens("chat:x", None) is None
    assert lens("repair:r1", TECH) is None
    seen = lens("repair:r1", CUSTOMER)
    assert seen is not None and seen[0] == "customer"
    internal = {"event": "note.added", "text": "x", "visibility": "internal"}
    assert seen[1](internal, seen[0]) is None
    nobody = lens("repair:r1", None)
    assert nobody is not None and nobody[1]({"event": "eta.changed"}, nobody[0]) is None


def test_a_gate_follows_the_last_event_that_decides() -> None:
    assert gate("chat:x", [message(1, b'{"event":"ticket.assigned"}')]) is None
    away = b'{"event":"ticket.assigned","technicians":["t2"]}'
    back = b'{"event":"ticket.assigned","technicians":["t1","t2"]}'
    note = b'{"event":"note.added","text":"x","visibility":"internal"}'
    removed = gate("repair:r1", [message(1, note), message(2, away)])
    assert removed is not None and not removed(TECH) and removed(CUSTOMER)
    again = gate("repair:r1", [message(1, away), message(2, back)])
    assert again is not None and again(TECH)


def test_a_personal_notice_for_one_role_is_hidden_from_the_others() -> None:
    notice = {"notice": "quote.waiting", "for_role": "customer"}
    guest = lens("user:c1", Principal("c1", Role.GUEST))
    owner = lens("user:c1", CUSTOMER)
    assert guest is not None and owner is not None
    assert guest[1](notice, guest[0]) is None and owner[1](notice, owner[0]) == notice
    for anyone in (guest, owner):  # a notice for the id, whatever the role
        assert anyone[1]({"notice": "hi"}, anyone[0]) == {"notice": "hi"}
    assert lens("user:c1", Principal("ops", Role.ADMIN)) is None  # operators see it all
