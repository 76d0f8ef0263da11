"""RoomOrder, the per-room reorder buffer: pure, tested without an event loop."""

from __future__ import annotations

import random

import pytest

from roomlog.ordering import RoomOrder
from roomlog.protocol import Message

ROOM = "chat:order"


def run(first: int, last: int, epoch: str = "e1") -> list[Message]:
    """The messages ``first..last`` (inclusive) of one commit, ascending."""
    return [Message(ROOM, seq, epoch, 1000 + seq, "u", b"%d" % seq)
            for seq in range(first, last + 1)]


def seqs(messages: list[Message]) -> list[int]:
    return [m.seq for m in messages]


def placed(epoch: str = "e1", head: int = 0) -> RoomOrder:
    order = RoomOrder()
    order.place(epoch, head)
    return order


def test_a_new_order_has_no_position() -> None:
    order = RoomOrder()
    assert (order.epoch, order.head, order.known, order.held) == (None, 0, 0, 0)
    assert not order.missing
    assert order.offer([]) == []
    assert order.epoch is None


def test_in_order_runs_are_released_as_they_come() -> None:
    order = placed()
    assert seqs(order.offer(run(1, 3))) == [1, 2, 3]
    assert seqs(order.offer(run(4, 4))) == [4]
    assert seqs(order.offer(run(5, 9))) == [5, 6, 7, 8, 9]
    assert (order.head, order.known, order.held, order.missing) == (9, 9, 0, False)


def test_released_messages_are_the_offered_objects() -> None:
    order = placed()
    messages = run(1, 2)
    out = order.offer(messages)
    assert all(a is b for a, b in zip(out, messages, strict=True))


def test_duplicates_are_dropped() -> None:
    order = placed()
    order.offer(run(1, 5))
    assert order.offer(run(1, 5)) == []
    assert order.offer(run(3, 3)) == []
    assert order.offer(run(5, 5)) == []
    assert (order.head, order.held, order.missing) == (5, 0, False)


def test_an_overlapping_run_releases_only_its_new_part() -> None:
    order = placed()
    order.offer(run(1, 4))
    assert seqs(order.offer(run(3, 7))) == [5, 6, 7]
    assert seqs(order.offer(run(7, 8))) == [8]
    assert order.head == 8


def test_an_early_arrival_is_held_until_the_gap_closes() -> None:
    order = placed()
    order.offer(run(1, 2))
    assert order.offer(run(5, 6)) == []
    assert (order.head, order.known, order.held) == (2, 6, 2)
    assert order.missing
    assert order.offer(run(4, 4)) == []  # still a gap: 3
    assert order.held == 3
    assert seqs(order.offer(run(3, 3))) == [3, 4, 5, 6]
    assert (order.head, order.held, order.missing) == (6, 0, False)


def test_held_runs_overlapping_the_released_one_are_released_once() -> None:
    order = placed()
    order.offer(run(4, 6))  # held
    order.offer(run(8, 9))  # held, after another gap (7)
    assert seqs(order.offer(run(1, 5))) == [1, 2, 3, 4, 5, 6]
    assert (order.head, order.held, order.missing) == (6, 2, True)  # 8, 9 wait for 7
    assert seqs(order.offer(run(6, 7))) == [7, 8, 9]
    assert (order.head, order.held, order.missing) == (9, 0, False)


def test_a_duplicate_of_a_held_message_is_held_once() -> None:
    order = placed()
    order.offer(run(3, 3))
    order.offer(run(3, 4))
    assert order.held == 2
    assert seqs(order.offer(run(1, 2))) == [1, 2, 3, 4]


def test_missing_follows_known_and_head() -> None:
    order = RoomOrder()
    order.expect("e1", 5)  # no position: nothing can be missing
    assert not order.missing and order.known == 0
    order.place("e1", 2)
    assert not order.missing
    order.expect("e1", 4)  # the log's head is beyond ours
    assert order.missing and order.known == 4
    order.expect("e1", 3)  # an older head never lowers what is known
    assert order.known == 4
    order.expect("other", 10)  # another epoch's head says nothing about this one
    assert order.known == 4
    assert seqs(order.offer(run(3, 4))) == [3, 4]
    assert not order.missing


def test_place_takes_a_position_only_when_there_is_none() -> None:
    order = RoomOrder()
    order.place("e1", 7)
    assert (order.epoch, order.head, order.known) == ("e1", 7, 7)
    order.place("e2", 3)  # already placed: ignored
    assert (order.epoch, order.head) == ("e1", 7)
    assert order.offer(run(5, 7)) == []
    assert seqs(order.offer(run(8, 8))) == [8]


def test_without_a_position_the_first_arrival_is_released_and_placed() -> None:
    order = RoomOrder()
    assert seqs(order.offer(run(4, 5))) == [4, 5]
    assert (order.epoch, order.head, order.known) == ("e1", 5, 5)
    assert order.offer(run(3, 3)) == []
    assert seqs(order.offer(run(6, 6))) == [6]


def test_a_new_epoch_is_released_as_is_and_becomes_the_position() -> None:
    order = placed("e1")
    order.offer(run(1, 3))
    order.offer(run(6, 7))  # held in e1
    out = order.offer(run(2, 4, epoch="e2"))
    assert seqs(out) == [2, 3, 4] and {m.epoch for m in out} == {"e2"}
    assert (order.epoch, order.head, order.known, order.held) == ("e2", 4, 4, 0)
    assert not order.missing
    assert seqs(order.offer(run(5, 5, epoch="e2"))) == [5]
    assert order.offer(run(4, 4, epoch="e2")) == []


def test_forget_drops_the_position_and_what_is_held() -> None:
    order = placed()
    order.offer(run(1, 2))
    order.offer(run(5, 5))
    order.forget()
    assert (order.epoch, order.head, order.known, order.held) == (None, 0, 0, 0)
    assert not order.missing
    order.place("e2", 10)  # a forgotten order can be placed again
    assert (order.epoch, order.head) == ("e2", 10)


def test_drop_held_keeps_the_gap_known_for_the_fill() -> None:
    order = placed()
    order.offer(run(1, 1))
    order.offer(run(3, 5))
    order.drop_held()
    assert order.held == 0
    assert order.missing and order.known == 5  # the log must bring 2..5
    assert seqs(order.offer(run(2, 2))) == [2]
    assert order.missing
    assert seqs(order.offer(run(2, 5))) == [3, 4, 5]
    assert not order.missing


@pytest.mark.parametrize("seed", range(20))
def test_shuffled_runs_with_duplicates_come_out_once_in_order(seed: int) -> None:
    rng = random.Random(seed)
    total = rng.randint(30, 200)
    # Commits of 1..5 messages, as several instances produce them.
    runs: list[list[Message]] = []
    start = 1
    while start <= total:
        end = min(total, start + rng.randint(0, 4))
        runs.append(run(start, end))
        start = end + 1
    # Duplicates: runs delivered twice, and overlapping runs (as a gap fill reads them).
    extra = [rng.choice(runs) for _ in range(len(runs) // 3)]
    for _ in range(len(runs) // 4):
        first = rng.randint(1, total)
        extra.append(run(first, min(total, first + rng.randint(0, 10))))
    arrivals = runs + extra
    rng.shuffle(arrivals)

    order = placed()
    released: list[Message] = []
    for messages in arrivals:
        released += order.offer(messages)
    assert seqs(released) == list(range(1, total + 1))
    assert (order.head, order.known, order.held, order.missing) == (total, total, 0, False)
