"""Presence's pure part: the per-user summary of a room's connections."""

from __future__ import annotations

from roomlog.presence import summarize


def test_presence_summary_counts_connections_per_user() -> None:
    entries = {
        "a.1": {"user": "bob", "role": "dj", "instance": "a"},
        "a.2": {"user": "alice", "role": "guest", "instance": "a"},
        "b.7": {"user": "alice", "role": "guest", "instance": "b"},
    }
    assert summarize("chat:x", entries) == {
        "room": "chat:x", "connections": 3,
        "users": [{"user": "alice", "role": "guest", "connections": 2},
                  {"user": "bob", "role": "dj", "connections": 1}],
    }
