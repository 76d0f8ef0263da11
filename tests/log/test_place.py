"""The pure parts of an append at once: ``place`` (what is stored, with which seq),
``pg_append.fits`` (what one statement may take) and ``pg_append.not_written`` (which
failures surely wrote nothing)."""

from __future__ import annotations

import asyncpg
import pytest

from roomlog.log import Append, Appended, Prior, pg_append, place


def test_place_numbers_new_items_after_the_head_and_answers_seen_ids_as_their_first() -> None:
    items = [Append("u1", b"1", "a"), Append("u1", b"2", "seen"), Append("u2", b"3", "a"),
             Append("u1", b"4"), Append("u1", b"5", "a")]
    known = {("u1", "seen"): Prior(3, 100, b'{"error":{}}')}
    results, new = place(items, known, head=7, epoch="e", now_ms=200)
    assert [(item.raw, seq) for item, seq in new] == [(b"1", 8), (b"3", 9), (b"4", 10)]
    assert results == [
        Appended(8, "e", 200),
        Appended(3, "e", 100, duplicate=True, refusal=b'{"error":{}}'),  # remembered
        Appended(9, "e", 200),  # the same id from another user is another key
        Appended(10, "e", 200),  # no id: always stored
        Appended(8, "e", 200, duplicate=True),  # earlier in the same batch
    ]
    assert known == {("u1", "seen"): Prior(3, 100, b'{"error":{}}')}  # not changed


def test_one_statement_takes_no_id_twice_and_no_more_than_retention_keeps() -> None:
    two = [Append("u", b"1", "x"), Append("u", b"2", "y")]
    assert pg_append.fits({1: two, 2: [Append("u", b"1", "x")]}, max_messages=0)
    assert not pg_append.fits({1: [*two, Append("u", b"3", "x")]}, max_messages=0)
    assert pg_append.fits({1: [Append("u", b"1"), Append("u", b"2")]}, max_messages=2)
    assert not pg_append.fits({1: [Append("u", b"1")] * 3}, max_messages=2)


@pytest.mark.parametrize(("exc", "written"), [
    (asyncpg.UniqueViolationError("taken"), False),  # the server refused: rolled back
    (asyncpg.CharacterNotInRepertoireError("NUL"), False),
    (asyncpg.InterfaceError("connection is closed"), False),  # refused before sending
    (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogate"), False),
    (asyncpg.ConnectionDoesNotExistError("closed in the middle"), None),  # unknown
    (ConnectionResetError(), None),
])
def test_only_a_lost_connection_leaves_the_outcome_unknown(exc: BaseException,
                                                           written: bool | None) -> None:
    assert pg_append.not_written(exc) is (written is False)
