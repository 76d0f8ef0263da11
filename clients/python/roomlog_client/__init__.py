"""An asyncio client of the roomlog hub that never loses an update.

    async with Client("ws://localhost:8000/ws", token=token) as client:
        async for event in client.subscribe("chat:lobby"):
            ...
        result = await client.command("queue:club42-set1", "request.submit", {...})

See clients/README.md for the semantics (states, backoff, resume, gap repair,
polling fallback, outbox, exactly-once commands).
"""

from __future__ import annotations

from roomlog_client.backoff import DEFAULT_SCHEDULE, Backoff
from roomlog_client.client import Client
from roomlog_client.errors import (
    RETRYABLE_CODES,
    STOP_CODES,
    ClientClosed,
    ClientError,
    ClientStopped,
    CommandError,
    ConnectFailed,
    ServerError,
    SubscriptionClosed,
    SubscriptionError,
    reconnects,
)
from roomlog_client.events import Ack, ConnectionState, Event, Message, Pending, Position, Reset
from roomlog_client.subscription import Subscription

__all__ = [
    "DEFAULT_SCHEDULE",
    "RETRYABLE_CODES",
    "STOP_CODES",
    "Ack",
    "Backoff",
    "Client",
    "ClientClosed",
    "ClientError",
    "ClientStopped",
    "CommandError",
    "ConnectFailed",
    "ConnectionState",
    "Event",
    "Message",
    "Pending",
    "Position",
    "Reset",
    "ServerError",
    "Subscription",
    "SubscriptionClosed",
    "SubscriptionError",
    "reconnects",
]
