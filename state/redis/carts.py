"""Each visitor's current cart on Redis, for abandoned-cart events across replicas.

A cart is a hash (lines as JSON, version, reported, updated_at, ...) changed under WATCH/MULTI.
A sorted set by `updated_at` indexes the carts a sweep may have to report: a cart leaves it when
it is emptied, closed or its version reported, so sweeps do not re-read settled carts forever.
"""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from state.carts import IdleCart

CART_TTL = 90 * 24 * 3600  # like profiles: a cart untouched this long is forgotten
_EMPTY = b"{}"

# Mark a version reported only if it is still the current one (a newer change stays unreported),
# and take the cart out of the sweep's index.
_REPORTED = """
local c = redis.call('HMGET', KEYS[1], 'version', 'reported')
if c[1] == ARGV[2] and tonumber(c[2] or '0') < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'reported', ARGV[2])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 1
end
return 0
"""

# Drop an index entry the sweep found nothing to report for, unless a change since made it due.
_PRUNE = """
local c = redis.call('HMGET', KEYS[1], 'lines', 'version', 'reported')
if not c[1] or c[1] == '{}' or tonumber(c[3] or '0') >= tonumber(c[2] or '0') then
  redis.call('ZREM', KEYS[2], ARGV[1])
end
"""


def _due(cart: dict[bytes, bytes]) -> bool:
    """Has lines and a version not yet reported (a missing cart is not due)."""
    lines = cart.get(b"lines")
    if lines is None or lines == _EMPTY:
        return False
    return int(cart.get(b"reported", b"0")) < int(cart[b"version"])


class RedisCarts:
    def __init__(self, client: Redis, prefix: str, *, ttl: int = CART_TTL) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl = ttl
        self.index = f"{prefix}carts:idle"
        self._reported = client.register_script(_REPORTED)
        self._prune = client.register_script(_PRUNE)

    def _key(self, visitor: str) -> str:
        return f"{self.prefix}cart:{visitor}"

    async def change(
        self,
        visitor: str,
        line: dict[str, Any],
        *,
        removed: bool,
        order_id: str | None,
        anonymous: bool,
        browser_id: str | None,
        now: float,
    ) -> dict[str, Any] | None:
        key = self._key(visitor)
        line_id = str(line.get("ID") or "")

        async def attempt(pipe: Pipeline) -> dict[str, Any] | None:
            raw = await pipe.hget(key, "lines")
            lines: dict[str, Any] = orjson.loads(raw) if raw else {}
            before = lines.get(line_id)
            if removed:
                lines.pop(line_id, None)
            elif line_id:
                lines[line_id] = line
            fields: dict[str, str | bytes] = {
                "lines": orjson.dumps(lines),
                "updated_at": repr(now),
                "anonymous": "1" if anonymous else "0",
            }
            # Like the SQLite cart: an unknown order id or browser id keeps the one known.
            if order_id is not None:
                fields["order_id"] = order_id
            if browser_id is not None:
                fields["browser_id"] = browser_id
            pipe.multi()
            pipe.hset(key, mapping=fields)
            pipe.hincrby(key, "version", 1)
            pipe.expire(key, self.ttl)
            if lines:
                pipe.zadd(self.index, {visitor: now})
            else:
                pipe.zrem(self.index, visitor)
            return before

        return await self.client.transaction(attempt, key, value_from_callable=True)

    async def close(self, visitor: str) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(self._key(visitor))
            pipe.zrem(self.index, visitor)
            await pipe.execute()

    async def move(self, anonymous: str, registered: str) -> None:
        """The registered visitor's cart, if any, is replaced (as the SQLite backend does)."""
        source, target = self._key(anonymous), self._key(registered)

        async def attempt(pipe: Pipeline) -> None:
            cart = await pipe.hgetall(source)
            pipe.multi()
            if not cart:
                return
            cart[b"anonymous"] = b"0"
            pipe.delete(target, source)
            pipe.hset(target, mapping=cart)
            pipe.expire(target, self.ttl)
            pipe.zrem(self.index, anonymous)
            if _due(cart):
                pipe.zadd(self.index, {registered: float(cart[b"updated_at"])})
            else:
                pipe.zrem(self.index, registered)

        await self.client.transaction(attempt, source)

    async def idle(self, idle_since: float, limit: int = 500) -> list[IdleCart]:
        found: list[IdleCart] = []
        settled: list[str] = []
        offset = 0
        while len(found) < limit:
            batch = await self.client.zrangebyscore(
                self.index, "-inf", f"({idle_since!r}", start=offset, num=limit
            )
            if not batch:
                break
            offset += len(batch)
            async with self.client.pipeline(transaction=False) as pipe:
                for member in batch:
                    pipe.hgetall(self._key(member.decode()))
                carts = await pipe.execute()
            for member, cart in zip(batch, carts, strict=True):
                visitor = member.decode()
                if not _due(cart):
                    settled.append(visitor)
                elif len(found) < limit:
                    found.append(_idle_cart(visitor, cart))
        for visitor in settled:
            await self._prune(keys=[self._key(visitor), self.index], args=[visitor])
        return found

    async def reported(self, visitor: str, version: int) -> bool:
        claimed = await self._reported(
            keys=[self._key(visitor), self.index], args=[visitor, str(version)]
        )
        return bool(claimed)


def _idle_cart(visitor: str, cart: dict[bytes, bytes]) -> IdleCart:
    order_id = cart.get(b"order_id")
    browser_id = cart.get(b"browser_id")
    return IdleCart(
        visitor=visitor,
        order_id=order_id.decode() if order_id is not None else None,
        lines=list(orjson.loads(cart[b"lines"]).values()),
        version=int(cart[b"version"]),
        anonymous=cart.get(b"anonymous") == b"1",
        browser_id=browser_id.decode() if browser_id is not None else None,
        updated_at=float(cart[b"updated_at"]),
    )
