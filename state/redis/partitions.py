"""Which replica consumes which partition of a destination's queue: leases with a fair share.

Per-visitor order across replicas needs each (destination, partition) consumed by one replica at
a time. A replica holds a partition through a lease key (SET NX PX, renewed while it lives) and
heartbeats into a per-destination sorted set; it takes free partitions up to its fair share,
ceil(partitions / live replicas), and gives extras back so a new replica gets work. A SIGKILLed
replica stops renewing: its leases expire and the survivors take its partitions over.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable, Collection

from redis.asyncio import Redis

# Renew or give back a lease only while it is still ours (it may have expired and been taken).
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def partition_of(key: str, partitions: int) -> int:
    """Stable across processes and restarts (Python's `hash` is salted per process)."""
    return zlib.crc32(key.encode()) % partitions


class Ownership:
    """The partitions of one destination this replica holds, and until when it surely holds them.

    A lease is trusted until a quarter of the lease time before it would expire, counted from
    when its renewal was sent: a replica whose renewals fail stops handing out work before
    another may take the partition over.
    """

    def __init__(
        self,
        client: Redis,
        prefix: str,
        dest: str,
        replica: str,
        partitions: int,
        lease_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.dest = dest
        self.replica = replica.encode()
        self.partitions = partitions
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.wall = wall
        self.owned: dict[int, float] = {}  # partition -> (monotonic) when our lease runs out
        self.draining: set[int] = set()  # held, but being given back: no new work from them
        self.refreshed = -math.inf
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._roster = f"{prefix}replicas:{dest}"

    def lease_key(self, partition: int) -> str:
        return f"{self.prefix}lease:{self.dest}:{partition}"

    def holds(self, partition: int) -> bool:
        until = self.owned.get(partition)
        if until is None or partition in self.draining:
            return False
        return until - self.lease_seconds / 4 > self.clock()

    def stale(self) -> bool:
        """Due for a refresh: three refreshes fit in one lease time."""
        return self.clock() - self.refreshed >= self.lease_seconds / 3

    async def refresh(self, busy: Collection[int]) -> tuple[set[int], set[int]]:
        """Heartbeat, renew what we hold, take free partitions up to our share, give back extras
        that have nothing in flight (`busy`). Returns (gained, lost or given back)."""
        ttl = int(self.lease_seconds * 1000)
        sent, now = self.clock(), self.wall()
        mine = sorted(self.owned)
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(self._roster, {self.replica: now})
        pipe.zremrangebyscore(self._roster, "-inf", now - self.lease_seconds)
        pipe.zcard(self._roster)
        for p in mine:
            await self._renew(keys=[self.lease_key(p)], args=[self.replica, ttl], client=pipe)
        pipe.mget([self.lease_key(p) for p in range(self.partitions)])
        *head, holders = await pipe.execute()
        live, renewed = int(head[2]), head[3:]
        lost = {p for p, ok in zip(mine, renewed, strict=True) if not ok}
        for p in mine:
            if p in lost:
                del self.owned[p]
                self.draining.discard(p)
            else:
                self.owned[p] = sent + self.lease_seconds
        share = math.ceil(self.partitions / max(live, 1))
        gained = await self._take(share, holders, ttl, sent)
        lost |= await self._give_back(share, busy)
        self.refreshed = sent
        return gained, lost

    async def _take(
        self, share: int, holders: list[bytes | None], ttl: int, sent: float
    ) -> set[int]:
        want = share - len(self.owned)
        if want <= 0:
            return set()
        start = zlib.crc32(self.replica) % self.partitions  # replicas start apart: fewer races
        order = [(start + i) % self.partitions for i in range(self.partitions)]
        free = [p for p in order if holders[p] is None and p not in self.owned][:want]
        if not free:
            return set()
        pipe = self.client.pipeline(transaction=False)
        for p in free:
            pipe.set(self.lease_key(p), self.replica, nx=True, px=ttl)
        taken = {p for p, ok in zip(free, await pipe.execute(), strict=True) if ok}
        for p in taken:
            self.owned[p] = sent + self.lease_seconds
        return taken

    async def _give_back(self, share: int, busy: Collection[int]) -> set[int]:
        """Over our share: stop handing out work from the extras (idle ones first) and give each
        back once nothing of it is in flight, so a busy replica still makes room for a new one."""
        extra = len(self.owned) - share
        ranked = sorted(self.owned, key=lambda p: (p in busy, -p))
        self.draining = set(ranked[: max(extra, 0)])
        idle = {p for p in self.draining if p not in busy}
        if idle:
            await self.release(idle)
        return idle

    async def release(self, partitions: Collection[int]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for p in partitions:
            self.owned.pop(p, None)
            self.draining.discard(p)
            await self._release(keys=[self.lease_key(p)], args=[self.replica], client=pipe)
        await pipe.execute()
