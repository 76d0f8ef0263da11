"""``roomlog.bus.takes.TakeRounds``, a pure unit: the request is a function of the
test that records what it was asked and answers when the test says."""

from __future__ import annotations

import asyncio
import collections

from roomlog.bus.takes import TakeRounds


class Server:
    """A bucket server that grants ``tokens`` per key and answers when released."""

    def __init__(self, tokens: int) -> None:
        self.tokens: dict[str, int] = collections.defaultdict(lambda: tokens)
        self.asked: list[int] = []
        self.go = asyncio.Event()

    async def request(self, key: str, rate: float, burst: float, n: int) -> tuple[int, float]:
        self.asked.append(n)
        await self.go.wait()
        granted = min(n, self.tokens[key])
        self.tokens[key] -= granted
        return granted, 1.5


def local(key: str, rate: float, burst: float) -> float:
    return 9.0


async def settle() -> None:
    """Let every ready task run until it waits."""
    for _ in range(10):
        await asyncio.sleep(0)


async def test_takes_that_come_while_a_request_runs_go_in_the_next_one() -> None:
    server = Server(tokens=4)
    rounds = TakeRounds(server.request, local)
    first = [asyncio.ensure_future(rounds.take("k", 1.0, 4)) for _ in range(2)]
    await settle()  # the round asks for the takes that came before it
    later = [asyncio.ensure_future(rounds.take("k", 1.0, 4)) for _ in range(5)]
    other = asyncio.ensure_future(rounds.take("other", 1.0, 4))
    await settle()
    assert server.asked == [2, 1]  # "other" has a round of its own
    server.go.set()
    assert await asyncio.gather(*first) == [0.0, 0.0]
    assert await asyncio.gather(*later) == [0.0, 0.0, 1.5, 1.5, 1.5]  # first come first served
    assert await other == 0.0
    assert server.asked == [2, 1, 5]


async def test_closing_answers_the_waiting_takes_from_the_local_bucket() -> None:
    server = Server(tokens=4)
    rounds = TakeRounds(server.request, local)
    asking = asyncio.ensure_future(rounds.take("k", 1.0, 4))
    await settle()
    queued = asyncio.ensure_future(rounds.take("k", 1.0, 4))
    await settle()
    assert server.asked == [1]
    await rounds.close()
    assert await asking == 9.0 and await queued == 9.0
