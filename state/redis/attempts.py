"""Failure counters on Redis: a counter whose expiry, set by the first failure, is the window."""

from __future__ import annotations

from redis.asyncio import Redis


class RedisAttempts:
    def __init__(self, client: Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def _key(self, key: str) -> str:
        return f"{self.prefix}ui:attempts:{key}"

    async def fail(self, key: str, window: float) -> int:
        name = self._key(key)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.set(name, 0, px=max(1, int(window * 1000)), nx=True)
            pipe.incr(name)
            _, count = await pipe.execute()
        return int(count)

    async def failures(self, key: str) -> int:
        raw = await self.client.get(self._key(key))
        return int(raw) if raw is not None else 0

    async def clear(self, key: str) -> None:
        await self.client.delete(self._key(key))
