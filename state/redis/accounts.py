"""Admin UI accounts on Redis: one hash, username -> JSON."""

from __future__ import annotations

import orjson
from redis.asyncio import Redis

from state.accounts import Account


def _account(raw: bytes) -> Account:
    return Account(**orjson.loads(raw))


class RedisAccounts:
    def __init__(self, client: Redis, prefix: str) -> None:
        self.client = client
        self.key = f"{prefix}ui:accounts"

    async def put(self, account: Account) -> None:
        body = {
            "username": account.username,
            "role": account.role,
            "password_hash": account.password_hash,
            "created_at": account.created_at,
        }
        await self.client.hset(self.key, account.username, orjson.dumps(body))

    async def get(self, username: str) -> Account | None:
        raw = await self.client.hget(self.key, username)
        return _account(raw) if raw is not None else None

    async def remove(self, username: str) -> bool:
        return bool(await self.client.hdel(self.key, username))

    async def list(self) -> list[Account]:
        rows = await self.client.hvals(self.key)
        return sorted((_account(raw) for raw in rows), key=lambda a: a.username)
