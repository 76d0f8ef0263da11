"""The bounded map behind the room-id and state caches: pure."""

from __future__ import annotations

from roomlog.lru import Lru


def test_the_least_recently_used_goes_first() -> None:
    cache: Lru[str, int] = Lru(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c"), len(cache)) == (1, None, 3, 2)
    cache.pop("a")
    cache.pop("missing")
    assert (cache.get("a"), len(cache)) == (None, 1)
    assert len(Lru[str, int](0)) == 0  # a size below 1 keeps one entry
