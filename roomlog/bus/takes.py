"""Rounds of rate-bucket takes for the buses that keep buckets in a server (Redis,
PostgreSQL): the takes of one bucket that come while its request runs wait for the
next round, and one request then asks for all their tokens.

A connection's pipelined writes each take a token, and without rounds each was a
request of its own: a pool connection held until the event loop, busy with
fan-outs, read the answer (issue 13: two workers on the PostgreSQL bus delivered
a twentieth of what one delivered alone). No I/O here: the bus passes the request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

__all__ = ["TakeRounds"]

Bucket = tuple[str, float, float]  # key, rate per second, burst
# (key, rate, burst, n) -> how many of n tokens the server granted and the seconds until
# its next one, or None when it did not answer
Request = Callable[[str, float, float, int], Awaitable[tuple[int, float] | None]]
Local = Callable[[str, float, float], float]  # one take from this instance's own bucket


class TakeRounds:
    """``take`` in rounds over ``request``. A take never raises: when the server does
    not answer, or a round ends otherwise (closing), its takes are answered by
    ``local``, this instance's own bucket."""

    def __init__(self, request: Request, local: Local) -> None:
        self._request = request
        self._local = local
        self._waiting: dict[Bucket, list[asyncio.Future[float]]] = {}
        self._rounds: set[asyncio.Task[None]] = set()

    async def take(self, key: str, rate: float, burst: float) -> float:
        """One token of bucket ``key`` (0.0), or the seconds until the next one."""
        bucket = (key, rate, burst)
        answer: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        waiting = self._waiting.get(bucket)
        if waiting is not None:
            waiting.append(answer)
        else:
            self._waiting[bucket] = [answer]
            task = asyncio.get_running_loop().create_task(self._run(bucket))
            self._rounds.add(task)
            task.add_done_callback(self._rounds.discard)
        return await answer

    async def _run(self, bucket: Bucket) -> None:
        """Requests for one bucket until no take waits, each for every take that came
        before it, first come first served."""
        asked: list[asyncio.Future[float]] = []
        try:
            while waiting := self._waiting.get(bucket):
                asked, self._waiting[bucket] = waiting, []  # later ones: the next round
                answered = await self._request(*bucket, len(asked))
                for n, answer in enumerate(asked):
                    if answer.done():  # a write cancelled meanwhile loses its token
                        continue
                    if answered is None:
                        answer.set_result(self._local(*bucket))
                    else:
                        granted, wait = answered
                        answer.set_result(0.0 if n < granted else wait)
        finally:  # done, or cancelled on close: nobody is left waiting
            for answer in asked + self._waiting.pop(bucket, []):
                if not answer.done():
                    answer.set_result(self._local(*bucket))

    async def close(self) -> None:
        """Stop every round; their takes are answered by ``local``."""
        pending = set(self._rounds)
        while pending:  # until they end: redis-py's wait_for may swallow one cancel
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.5)
