"""Drafts on Redis: one JSON string per draft, a sorted set of ids by last change.

A change WATCHes the draft's key, so two replicas changing one draft at once cannot both win:
the loser re-reads and finds the state it expected gone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from state.drafts import Draft


class RedisDrafts:
    def __init__(self, client: Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.index = f"{prefix}ui:drafts"

    def _key(self, draft_id: str) -> str:
        return f"{self.prefix}ui:draft:{draft_id}"

    async def create(self, draft: Draft) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.set(self._key(draft.id), draft.to_json())
            pipe.zadd(self.index, {draft.id: draft.updated_at})
            await pipe.execute()

    async def get(self, draft_id: str) -> Draft | None:
        raw = await self.client.get(self._key(draft_id))
        return Draft.from_json(raw) if raw is not None else None

    async def list(self) -> list[Draft]:
        ids = await self.client.zrevrange(self.index, 0, -1)
        if not ids:
            return []
        raws = await self.client.mget([self._key(i.decode()) for i in ids])
        return [Draft.from_json(raw) for raw in raws if raw is not None]

    async def change(self, draft_id: str, expect: Collection[str], **changes: Any) -> Draft | None:
        key = self._key(draft_id)

        async def attempt(pipe: Pipeline) -> Draft | None:
            raw = await pipe.get(key)
            current = Draft.from_json(raw) if raw is not None else None
            pipe.multi()
            if current is None or current.state not in expect:
                return None
            changed = dataclasses.replace(current, **changes)
            pipe.set(key, changed.to_json())
            pipe.zadd(self.index, {draft_id: changed.updated_at})
            return changed

        return await self.client.transaction(attempt, key, value_from_callable=True)
