"""The audit log on Redis: a list, newest entry at the head."""

from __future__ import annotations

import orjson
from redis.asyncio import Redis

from state.audit import AuditEntry


class RedisAuditLog:
    def __init__(self, client: Redis, prefix: str) -> None:
        self.client = client
        self.key = f"{prefix}ui:audit"

    async def add(self, entry: AuditEntry) -> None:
        body = [entry.at, entry.actor, entry.action, entry.target, entry.detail]
        await self.client.lpush(self.key, orjson.dumps(body))

    async def recent(self, limit: int = 200) -> list[AuditEntry]:
        rows = await self.client.lrange(self.key, 0, limit - 1)
        return [AuditEntry(*orjson.loads(raw)) for raw in rows]
