"""Visitor profiles on Redis: one JSON string per visitor, shared by every replica.

Writes go through WATCH/MULTI, so two replicas settling events for one visitor never lose each
other's change. Reads sit on the request path, so a short in-process cache answers repeats; its
one-second lifetime is the bound the `Profiles` contract promises on staleness.
"""

from __future__ import annotations

from cachetools import TTLCache
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from state.profiles import Change, Profile

PROFILE_TTL = 90 * 24 * 3600  # a visitor unseen this long starts afresh (refreshed on write)
CACHE_SECONDS = 1.0  # a cached profile is never older than this


class RedisProfiles:
    def __init__(
        self,
        client: Redis,
        prefix: str,
        *,
        ttl: int = PROFILE_TTL,
        cache_size: int = 50_000,
        cache_seconds: float = CACHE_SECONDS,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl = ttl
        self._cache: TTLCache[str, Profile] = TTLCache(cache_size, ttl=cache_seconds)
        # Every new shopper misses; remembering the miss briefly spares a round trip per call.
        self._missing: TTLCache[str, bool] = TTLCache(cache_size, ttl=cache_seconds)

    def _key(self, visitor_id: str) -> str:
        return f"{self.prefix}profile:{visitor_id}"

    async def get(self, visitor_id: str) -> Profile | None:
        cached = self._cache.get(visitor_id)
        if cached is not None:
            return cached.copy()
        if visitor_id in self._missing:
            return None
        raw = await self.client.get(self._key(visitor_id))
        if raw is None:
            self._missing[visitor_id] = True
            return None
        profile = Profile.from_json(raw)
        self._cache[visitor_id] = profile
        return profile.copy()

    async def update(self, visitor_id: str, change: Change) -> Profile | None:
        """`change` may run more than once (once per lost race), each time on a fresh copy."""
        key = self._key(visitor_id)

        async def attempt(pipe: Pipeline) -> Profile | None:
            raw = await pipe.get(key)
            current = Profile.from_json(raw) if raw is not None else None
            changed = change(current.copy() if current is not None else None)
            pipe.multi()
            if changed is None:
                return current
            pipe.set(key, changed.to_json(), ex=self.ttl)
            return changed

        stored = await self.client.transaction(attempt, key, value_from_callable=True)
        self._remember(visitor_id, stored)
        return stored.copy() if stored is not None else None

    def _remember(self, visitor_id: str, profile: Profile | None) -> None:
        if profile is None:
            self._cache.pop(visitor_id, None)
            self._missing[visitor_id] = True
        else:
            self._cache[visitor_id] = profile.copy()
            self._missing.pop(visitor_id, None)
