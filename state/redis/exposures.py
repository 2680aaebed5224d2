"""Experiment exposures and conversions on Redis, counted as they arrive.

Per variant (table, rule, variant) the store keeps counters (exposures, orders, revenue), each
visitor's first exposure time and the set of converted visitors; per visitor, the variants seen
(with first times) and the orders counted. Two scripts keep those in step atomically, so the
report is a few reads per variant and equals the SQLite report's join: an order counts for a
variant when it was submitted at or after the visitor's first exposure to it, whichever of the
two arrives first. The scripts name keys they derive from the data, which a standalone Redis
(or one primary) allows and Redis Cluster does not.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from redis.asyncio import Redis

from state.exposures import Exposure

ORDERS_TTL = 90 * 24 * 3600  # a visitor's counted orders: the per-order idempotency window
HOUR = 3600
HOURS_KEPT = 25  # hourly match counters (for "matched in the last 24 h") live this many hours

# ARGV: prefix, then (variant key, visitor, at) triples. A visitor's first exposure to a variant
# (or an earlier one arriving late) also counts the orders already recorded since that time.
_ADD = """
local p = ARGV[1]
for i = 2, #ARGV, 3 do
  local vk, visitor, at = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local stats = p .. 'exp:stats:' .. vk
  local firsts = p .. 'exp:first:' .. vk
  redis.call('SADD', p .. 'exp:variants', vk)
  redis.call('HINCRBY', stats, 'exposures', 1)
  local old = redis.call('HGET', firsts, visitor)
  old = old and tonumber(old)
  if not old or at < old then
    redis.call('HSET', firsts, visitor, ARGV[i + 2])
    redis.call('HSET', p .. 'exp:seen:' .. visitor, vk, ARGV[i + 2])
    local orders = redis.call('HGETALL', p .. 'exp:orders:' .. visitor)
    for j = 2, #orders, 2 do
      local when, total = string.match(orders[j], '^(%S+) (%S+)$')
      when = tonumber(when)
      if when >= at and (not old or when < old) then
        redis.call('HINCRBY', stats, 'orders', 1)
        redis.call('HINCRBYFLOAT', stats, 'revenue', total)
        redis.call('SADD', p .. 'exp:converted:' .. vk, visitor)
      end
    end
  end
end
"""

# ARGV: prefix, visitor, order id, at, total, orders TTL. Once per (visitor, order).
_CONVERT = """
local p, visitor, at = ARGV[1], ARGV[2], tonumber(ARGV[4])
local orders = p .. 'exp:orders:' .. visitor
if redis.call('HSETNX', orders, ARGV[3], ARGV[4] .. ' ' .. ARGV[5]) == 0 then
  return 0
end
redis.call('EXPIRE', orders, ARGV[6])
local seen = redis.call('HGETALL', p .. 'exp:seen:' .. visitor)
for j = 1, #seen, 2 do
  if tonumber(seen[j + 1]) <= at then
    local stats = p .. 'exp:stats:' .. seen[j]
    redis.call('HINCRBY', stats, 'orders', 1)
    redis.call('HINCRBYFLOAT', stats, 'revenue', ARGV[5])
    redis.call('SADD', p .. 'exp:converted:' .. seen[j], visitor)
  end
end
return 1
"""


def _variant_key(exposure: Exposure) -> bytes:
    """JSON, so ids containing any separator stay unambiguous."""
    return orjson.dumps([exposure.table, exposure.rule, exposure.variant])


class RedisExposures:
    def __init__(self, client: Redis, prefix: str, *, orders_ttl: int = ORDERS_TTL) -> None:
        self.client = client
        self.prefix = prefix
        self.orders_ttl = orders_ttl
        self.variants = f"{prefix}exp:variants"
        self._add = client.register_script(_ADD)
        self._convert = client.register_script(_CONVERT)

    async def add(self, exposures: list[Exposure]) -> None:
        if not exposures:
            return
        args: list[str | bytes] = [self.prefix]
        for exposure in exposures:
            args += [_variant_key(exposure), exposure.visitor, repr(float(exposure.at))]
        await self._add(args=args)
        async with self.client.pipeline(transaction=False) as pipe:
            for exposure in exposures:
                hour = f"{self.prefix}exp:hour:{int(exposure.at // HOUR)}"
                pipe.hincrby(hour, orjson.dumps([exposure.table, exposure.rule]), 1)
                pipe.expire(hour, HOURS_KEPT * HOUR)
            await pipe.execute()

    async def convert(self, visitor: str, order_id: str, total: float, at: float) -> None:
        await self._convert(
            args=[
                self.prefix,
                visitor,
                order_id,
                repr(float(at)),
                repr(float(total)),
                self.orders_ttl,
            ]
        )

    async def matched_since(self, since: float) -> dict[tuple[str, str], int]:
        first, last = int(since // HOUR), int(time.time() // HOUR)
        async with self.client.pipeline(transaction=False) as pipe:
            for hour in range(first, last + 1):
                pipe.hgetall(f"{self.prefix}exp:hour:{hour}")
            buckets = await pipe.execute()
        counts: dict[tuple[str, str], int] = {}
        for bucket in buckets:
            for member, count in bucket.items():
                table, rule = orjson.loads(member)
                counts[(table, rule)] = counts.get((table, rule), 0) + int(count)
        return counts

    async def report(self) -> list[dict[str, Any]]:
        members = await self.client.smembers(self.variants)
        variants = sorted((orjson.loads(member), member.decode()) for member in members)
        async with self.client.pipeline(transaction=False) as pipe:
            for _, vk in variants:
                pipe.hmget(f"{self.prefix}exp:stats:{vk}", ("exposures", "orders", "revenue"))
                pipe.hlen(f"{self.prefix}exp:first:{vk}")
                pipe.scard(f"{self.prefix}exp:converted:{vk}")
            answers = await pipe.execute()
        rows = []
        for index, ((table, rule, variant), _) in enumerate(variants):
            (exposures, orders, revenue), visitors, converted = answers[3 * index : 3 * index + 3]
            rows.append(
                {
                    "table_id": table,
                    "rule_id": rule,
                    "variant": variant,
                    "exposures": int(exposures or 0),
                    "visitors": visitors,
                    "converted": converted,
                    "orders": int(orders or 0),
                    "revenue": round(float(revenue or 0), 2),
                    "conversion_rate": round(converted / visitors, 4) if visitors else 0.0,
                }
            )
        return rows
