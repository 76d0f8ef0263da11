"""The collaborators a connection needs, built once by ``create_app``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from realtime.auth import Tokens
from realtime.bus import Bus
from realtime.cluster import Cluster
from realtime.hub import Hub
from realtime.log import Log
from realtime.outbox import Flusher
from realtime.presence import Presence
from realtime.publisher import Publisher
from realtime.settings import Settings
from realtime.stats import Stats

if TYPE_CHECKING:
    from realtime.session import Session
    from realtime.transports.sse import Stream

__all__ = ["Services"]


@dataclass
class Services:
    settings: Settings
    log: Log
    bus: Bus
    hub: Hub
    publisher: Publisher
    cluster: Cluster
    presence: Presence
    tokens: Tokens
    stats: Stats
    clock: Callable[[], float]  # monotonic seconds, for timers and rate limits
    flusher: Flusher = field(default_factory=Flusher)  # one flush of all outboxes per loop turn
    sessions: set[Session] = field(default_factory=set)  # open WebSocket sessions
    streams: set[Stream] = field(default_factory=set)  # open SSE streams
    draining: bool = False  # SIGTERM: no new writes, clients told to go elsewhere
