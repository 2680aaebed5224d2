"""Saved test shoppers on Redis: one hash, name -> JSON."""

from __future__ import annotations

from redis.asyncio import Redis

from state.shoppers import SavedShopper


class RedisShoppers:
    def __init__(self, client: Redis, prefix: str) -> None:
        self.client = client
        self.key = f"{prefix}ui:shoppers"

    async def put(self, shopper: SavedShopper) -> None:
        await self.client.hset(self.key, shopper.name, shopper.to_json())

    async def get(self, name: str) -> SavedShopper | None:
        raw = await self.client.hget(self.key, name)
        return SavedShopper.from_json(raw) if raw is not None else None

    async def remove(self, name: str) -> bool:
        return bool(await self.client.hdel(self.key, name))

    async def list(self) -> list[SavedShopper]:
        rows = await self.client.hvals(self.key)
        return sorted((SavedShopper.from_json(raw) for raw in rows), key=lambda s: s.name)
