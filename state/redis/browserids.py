"""CDP browser ids on Redis: one key per visitor with a TTL, shared by every replica.

An id changes only through `put` (the storefront's own id wins), so a one-second in-process cache
can only be behind by a storefront switching ids mid-journey, and then only for a second.
"""

from __future__ import annotations

from cachetools import TTLCache
from redis.asyncio import Redis

BROWSER_ID_TTL = 90 * 24 * 3600  # like profiles: a visitor unseen this long starts afresh


class RedisBrowserIds:
    def __init__(
        self,
        client: Redis,
        prefix: str,
        *,
        ttl: int = BROWSER_ID_TTL,
        cache_size: int = 50_000,
        cache_seconds: float = 1.0,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl = ttl
        self._cache: TTLCache[str, str] = TTLCache(cache_size, ttl=cache_seconds)

    def _key(self, visitor: str) -> str:
        return f"{self.prefix}browser:{visitor}"

    async def get(self, visitor: str) -> str | None:
        known = self._cache.get(visitor)
        if known is None:
            raw = await self.client.get(self._key(visitor))
            if raw is None:
                return None
            known = raw.decode()
            self._cache[visitor] = known
        return known

    async def put(self, visitor: str, browser_id: str) -> None:
        await self.client.set(self._key(visitor), browser_id, ex=self.ttl)
        self._cache[visitor] = browser_id

    async def put_new(self, visitor: str, browser_id: str) -> str:
        # SET NX GET (Redis 7): sets only when absent, and answers what was there before.
        before = await self.client.set(
            self._key(visitor), browser_id, ex=self.ttl, nx=True, get=True
        )
        kept = before.decode() if before is not None else browser_id
        self._cache[visitor] = kept
        return kept
