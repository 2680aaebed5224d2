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

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import orjson
from redis.asyncio import Redis

from state.exposures import Exposure
from state.redis.outbox import MOVE_BATCH, Outage, move_back
from state.redis.spool import Spool

log = logging.getLogger(__name__)

ORDERS_TTL = 90 * 24 * 3600  # a visitor's counted orders: the per-order idempotency window
HOUR = 3600
HOURS_KEPT = 25  # hourly match counters (for "matched in the last 24 h") live this many hours

# ARGV: prefix, hourly counters' TTL, then per exposure: variant key, visitor, at, hour,
# [table, rule]. A visitor's first exposure to a variant (or an earlier one arriving late) also
# counts the orders already recorded since that time. One script: a batch counts whole or not at
# all, so one retried after an outage is not half counted twice.
_ADD = """
local p, ttl = ARGV[1], ARGV[2]
for i = 3, #ARGV, 5 do
  local vk, visitor, at = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local stats = p .. 'exp:stats:' .. vk
  local firsts = p .. 'exp:first:' .. vk
  redis.call('SADD', p .. 'exp:variants', vk)
  redis.call('HINCRBY', stats, 'exposures', 1)
  local hour = p .. 'exp:hour:' .. ARGV[i + 3]
  redis.call('HINCRBY', hour, ARGV[i + 4], 1)
  redis.call('EXPIRE', hour, ttl)
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
    """While Redis is unreachable, exposures go to the local spool (fsync'd, like events) and a
    mover adds them once Redis answers, so the report loses none to an outage or to a process
    killed during one (the next process on the spool file moves them)."""

    def __init__(
        self,
        client: Redis,
        prefix: str,
        spool: Spool | None = None,
        *,
        orders_ttl: int = ORDERS_TTL,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.orders_ttl = orders_ttl
        self.variants = f"{prefix}exp:variants"
        self.spool = spool
        self._add = client.register_script(_ADD)
        self._convert = client.register_script(_CONVERT)
        self._spooled = 0  # exposures in the spool, counted before they are written
        self._mover: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Move what an earlier process left in the spool (the spool must be open)."""
        if self.spool is not None:
            self._spooled = await self.spool.exposures_waiting()
            if self._spooled:
                self._start_mover()

    async def close(self) -> None:
        if self._mover is not None:
            self._mover.cancel()
            await asyncio.gather(self._mover, return_exceptions=True)

    def spooled(self) -> int:
        return self._spooled

    async def add(self, exposures: list[Exposure]) -> None:
        if not exposures:
            return
        if self.spool is None:
            await self._push(exposures)
            return
        if not self._spooled:  # while some are spooled, newer ones join them
            try:
                await self._push(exposures)
                return
            except Outage as exc:
                log.warning("Redis unreachable (%s); exposures go to the spool", exc)
        self._spooled += len(exposures)
        try:
            await self.spool.add_exposures(exposures)
        except BaseException:
            self._spooled -= len(exposures)
            raise
        self._start_mover()

    async def _push(self, exposures: Sequence[Exposure]) -> None:
        args: list[str | bytes | int] = [self.prefix, HOURS_KEPT * HOUR]
        for exposure in exposures:
            args += [
                _variant_key(exposure),
                exposure.visitor,
                repr(float(exposure.at)),
                int(exposure.at // HOUR),
                orjson.dumps([exposure.table, exposure.rule]),
            ]
        await self._add(args=args)

    def _start_mover(self) -> None:
        if self._mover is None or self._mover.done():
            self._mover = asyncio.create_task(self._move(), name="exposures-spool-mover")

    async def _move(self) -> None:
        assert self.spool is not None
        spool = self.spool

        async def moved(batch: list[tuple[int, Exposure]]) -> None:
            await spool.drop_exposures(batch[-1][0])
            self._spooled -= len(batch)

        await move_back(
            lambda: self._spooled,
            lambda: spool.oldest_exposures(MOVE_BATCH),
            self._push,
            moved,
            lambda exc: log.debug("exposures spool mover: Redis still away (%s)", exc),
        )

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
