"""Shared secrets on Redis: HSETNX, so the first replica's value is everyone's."""

from __future__ import annotations

from collections.abc import Callable

from redis.asyncio import Redis


class RedisSecrets:
    def __init__(self, client: Redis, prefix: str) -> None:
        self.client = client
        self.key = f"{prefix}ui:secrets"

    async def shared(self, name: str, make: Callable[[], str]) -> str:
        await self.client.hsetnx(self.key, name, make())
        raw = await self.client.hget(self.key, name)
        return raw.decode()
