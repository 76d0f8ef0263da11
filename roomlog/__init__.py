"""roomlog: a real-time hub of durable, sequenced rooms over WebSocket, long-polling and SSE."""

__version__ = "0.1.0"
