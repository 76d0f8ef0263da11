"""A token bucket with an injected clock. Pure; no I/O."""

from __future__ import annotations

from collections.abc import Callable

from roomlog.lru import Lru

__all__ = ["Buckets", "TokenBucket"]


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def take(self) -> float:
        """Take a token: 0.0 on success, else the seconds until one is free."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self._rate


class Buckets:
    """Token buckets by key, made on first use; at most ``size`` kept (the least
    recently used are forgotten, which only ever gives a key a full bucket back)."""

    def __init__(self, clock: Callable[[], float], size: int = 50_000) -> None:
        self._clock = clock
        self._buckets: Lru[str, TokenBucket] = Lru(size)

    def take(self, key: str, rate: float, burst: float) -> float:
        """Take a token from bucket ``key``: 0.0, or the seconds until one is free."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(rate, max(1, int(burst)), self._clock)
            self._buckets.put(key, bucket)
        return bucket.take()
