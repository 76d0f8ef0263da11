"""The collaborators a connection needs, built once by ``create_app``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from roomlog.auth import Tokens
from roomlog.bus import Bus
from roomlog.cluster import Cluster
from roomlog.console.reports import Instances
from roomlog.deadlines import Deadlines
from roomlog.errors import ErrorCode, RoomlogError
from roomlog.hooks.gate import Gate
from roomlog.hub import Hub
from roomlog.identity import Principal, Role
from roomlog.limits import Limits
from roomlog.log import Log
from roomlog.media import MediaStore
from roomlog.outbox import Flusher
from roomlog.presence import Presence
from roomlog.publisher import Publisher
from roomlog.revocation import Revocation
from roomlog.rooms import RoomName
from roomlog.settings import Settings
from roomlog.stats import Stats
from roomlog.webhooks.manager import Webhooks

if TYPE_CHECKING:
    from roomlog.session import Session
    from roomlog.transports.longpoll import Poll
    from roomlog.transports.sse import Stream

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
    media: MediaStore
    revocation: Revocation  # the bans in force here, and changing them
    clock: Callable[[], float]  # monotonic seconds, for timers and rate limits
    gate: Gate  # every publish and command goes in here (command hooks, then the publisher)
    limits: Limits  # connections and rates per user and per client address
    webhooks: Webhooks  # endpoints, and the deliveries this instance holds the lease of
    flusher: Flusher = field(default_factory=Flusher)  # one flush of all outboxes per loop turn
    #: connect timeouts and token expiries of every session, on shared timers
    deadlines: Deadlines = field(default_factory=Deadlines)
    sessions: set[Session] = field(default_factory=set)  # open WebSocket sessions
    streams: set[Stream] = field(default_factory=set)  # open SSE streams
    polls: set[Poll] = field(default_factory=set)  # long-polls holding a request open
    #: every instance's latest figures (roomlog.console.instances), for the console
    instances: Instances = field(default_factory=lambda: Instances(2.0))
    draining: bool = False  # SIGTERM: no new writes, clients told to go elsewhere

    async def check_command(self, room: RoomName, name: str, args: dict[str, Any],
                            who: Principal) -> None:
        """What the pure domain cannot check: a photo's ``upload_id`` names a file
        uploaded to this room (INVALID_ARGS otherwise). Asked only of staff, who may
        add photos: anyone else gets the domain's FORBIDDEN first."""
        upload = args.get("upload_id")
        if (room.kind == "repair" and name == "photo.add" and isinstance(upload, str)
                and who.role in (Role.TECHNICIAN, Role.ADMIN, Role.SERVICE)
                and await self.media.find(str(room), upload) is None):
            raise RoomlogError(ErrorCode.INVALID_ARGS,
                                f"no upload {upload[:80]!r} in {room}: upload the photo "
                                f"with POST /v1/rooms/{room}/photos first")

    async def check_read(self, room: RoomName, who: Principal) -> None:
        """FORBIDDEN unless ``who`` may read ``room``: the kind's rule, then, for a
        private domain room (a repair ticket), what its state says."""
        room.check_subscribe(who)
        runner = self.publisher.runners.get(room.kind)
        if (runner is not None and runner.domain.private
                and not await runner.can_read(self.log, str(room), who)):
            raise RoomlogError(ErrorCode.FORBIDDEN, f"{who.user} may not read {room}")
