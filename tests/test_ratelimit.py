from __future__ import annotations

from roomlog.ratelimit import TokenBucket


def test_bucket_allows_a_burst_then_the_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2.0, burst=3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == 0.5  # the next token in half a second
    now[0] = 0.5
    assert bucket.take() == 0.0
    now[0] = 100.0  # never more than the burst saved up
    assert [bucket.take() for _ in range(4)][-1] > 0
