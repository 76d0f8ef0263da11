"""The collaborators a connection needs, built once by ``create_app``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from realtime.auth import Tokens
from realtime.bus import Bus
from realtime.hub import Hub
from realtime.log import Log
from realtime.outbox import Flusher
from realtime.publisher import Publisher
from realtime.settings import Settings

if TYPE_CHECKING:
    from realtime.session import Session

__all__ = ["Services"]


@dataclass
class Services:
    settings: Settings
    log: Log
    bus: Bus
    hub: Hub
    publisher: Publisher
    tokens: Tokens
    clock: Callable[[], float]  # monotonic seconds, for timers and rate limits
    flusher: Flusher = field(default_factory=Flusher)  # one flush of all outboxes per loop turn
    sessions: set[Session] = field(default_factory=set)  # open WebSocket sessions
