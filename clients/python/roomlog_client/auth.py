"""The token: the one given, and fresh ones from the application's provider.

A refused token (close 4001, an ``UNAUTHORIZED`` answer to ``connect``, HTTP 401)
gets one fresh token from the provider and one more try; refused again before
anything worked, the client stops (``ClientStopped`` with 4001).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

from roomlog_client.errors import UNAUTHORIZED_CLOSE, ClientStopped

__all__ = ["Auth", "TokenProvider"]

TokenProvider = Callable[[], Awaitable[str] | str]


class Auth:
    def __init__(self, token: str | None, provider: TokenProvider | None) -> None:
        if token is None and provider is None:
            raise ValueError("give a token, a token_provider, or both")
        self.token = token
        self.provider = provider
        self._retried = False
        self._lock = asyncio.Lock()

    async def current(self) -> str:
        if self.token is None:
            return await self.fresh()
        return self.token

    async def fresh(self) -> str:
        """A new token from the provider (the current one without a provider)."""
        if self.provider is None:
            assert self.token is not None
            return self.token
        token = self.provider()
        if inspect.isawaitable(token):
            token = await token
        if not isinstance(token, str) or not token:
            raise TypeError("the token provider must return a non-empty string")
        self.token = token
        return token

    async def refused(self, used: str | None, why: str) -> None:
        """``used`` was refused: get a fresh token to try once more, or raise
        ClientStopped. Several refusals of the same token refresh it once."""
        async with self._lock:
            if used != self.token:
                return  # someone else refreshed it meanwhile
            if self.provider is None or self._retried:
                raise ClientStopped(f"token refused: {why}", UNAUTHORIZED_CLOSE)
            self._retried = True
            try:
                await self.fresh()
            except Exception as exc:
                raise ClientStopped(f"token refused ({why}); the token provider failed: "
                                    f"{exc!r}", UNAUTHORIZED_CLOSE) from exc

    def accepted(self) -> None:
        """The token worked: a later refusal may refresh it again."""
        self._retried = False
