"""Transports: WebSocket, long-polling and SSE endpoints. Thin glue only."""
