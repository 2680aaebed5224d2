"""The outbox on Redis Streams, for any number of replicas on one Redis.

Layout (every key under the configured prefix):
- `out:{p}`: partition streams. An event goes to partition crc32(order key) % partitions, one
  entry whatever its destinations: the recorded event, its destinations, when it was queued and
  until when it is held.
- one consumer group per destination on every partition stream; a destination's consumer acks at
  once the entries not routed to it. Each (destination, partition) is consumed by one replica at a
  time (`partitions.Ownership`), which is what keeps a visitor's events in order across replicas.
  A new owner first claims every entry the previous owner left pending (XAUTOCLAIM), in id order,
  then reads new ones.
- `ev:{event id}`: the hydrated body `release` stores; a held entry goes with it, or as recorded
  once its hold passes.
- `retry:{dest}`: attempts and next try per entry, so backoff grows across replicas.
- `dead:{dest}`: dead letters; `pending:{dest}` and `delivered:{dest}`: exact counters kept by
  the same scripts that append and ack; `dests`: every destination ever routed to.
- `recent`: a capped stream of recorded events for `recent` (its ids are the cursors).

Each owned partition has an in-memory window of entries read but not acked (bounded), so `lease`
walks them by the same rules as the SQLite outbox. Partition streams are trimmed to the oldest id
any group still needs: Redis holds the backlog, the gateway holds bounded windows.

While Redis is unreachable `append` writes to the local spool and a mover drains it back in
order; `release` of a spooled event hydrates the spooled copy, other failed releases are dropped
(the event goes as recorded after its hold).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from state import StateConfig
from state.events import Event
from state.outbox import Delivery, Leased
from state.redis.partitions import Ownership, partition_of
from state.redis.spool import Record, Spool
from state.redis.wire import Wire

log = logging.getLogger(__name__)

WINDOW = 256  # entries read but not acked, per owned partition: the gateway's memory bound
RELEASED_TTL = 7 * 24 * 3600  # a released body outlives any hold and any sane backlog
RECENT = 10_000  # events kept for `recent` (approximately: trimmed by whole stream nodes)
TRIM_EVERY = 15  # maintenance rounds (each a third of the lease time) between trims
MOVE_BATCH = 500  # spooled records pushed to Redis per round trip
# Entries decoded between turns of the loop: a lease of hundreds in one go held up the answers
# to shoppers' appends by milliseconds (the p99 of a tracked call at one connection).
YIELD_EVERY = 32

# Ack entries and keep the counters exact: a second ack of the same entry (a duplicate
# delivery after a take-over) acks nothing and counts nothing. KEYS: the stream, the pending
# counter, then (a delivery) the delivered counter and the retry hash, whose fields for these
# entries ("{partition}:{id}") go. ARGV: the group, the partition, the entry ids.
_ACK = """
local n = redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 3))
if n > 0 then
  redis.call('DECRBY', KEYS[2], n)
  if KEYS[3] then redis.call('INCRBY', KEYS[3], n) end
end
if KEYS[4] then
  local refs = {}
  for i = 3, #ARGV do refs[#refs + 1] = ARGV[2] .. ':' .. ARGV[i] end
  redis.call('HDEL', KEYS[4], unpack(refs))
end
return n
"""

# Append a batch: each record to its partition stream (if routed anywhere) and to `recent`,
# then the pending counters. KEYS: recent, the partition streams, the counters. ARGV: recent's
# length, the record and stream counts, 7 values per record (its stream's index in KEYS, 0 for
# none; body, event id, order key, destinations, queued at, held until), one count per counter.
_APPEND = """
local n, streams, i = tonumber(ARGV[2]), tonumber(ARGV[3]), 4
for _ = 1, n do
  local s = tonumber(ARGV[i])
  if s > 0 then
    redis.call('XADD', KEYS[s], '*', 'e', ARGV[i + 1], 'i', ARGV[i + 2], 'k', ARGV[i + 3],
               'd', ARGV[i + 4], 'q', ARGV[i + 5], 'h', ARGV[i + 6])
  end
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[i + 1])
  i = i + 7
end
for k = streams + 2, #KEYS do
  redis.call('INCRBY', KEYS[k], ARGV[i])
  i = i + 1
end
return n
"""

Outage = (RedisError, OSError)
T = TypeVar("T")


async def move_back(
    waiting: Callable[[], int],
    oldest: Callable[[], Awaitable[list[tuple[int, T]]]],
    push: Callable[[list[T]], Awaitable[None]],
    moved: Callable[[list[tuple[int, T]]], Awaitable[None]],
    outage: Callable[[BaseException], None],
) -> None:
    """Move what waits in a spool into Redis, a batch at a time, oldest first, while anything
    waits; back off (up to 2 s) while Redis is away. `moved` forgets a batch Redis has."""
    delay = 0.1
    while waiting() > 0:
        batch = await oldest()
        if not batch:
            await asyncio.sleep(0.01)  # a spool write is under way
            continue
        try:
            await push([item for _, item in batch])
        except Outage as exc:
            outage(exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
            continue
        await moved(batch)
        delay = 0.1


@dataclass(slots=True)
class _Entry:
    id: bytes
    order: tuple[int, int]  # the stream id as numbers: windows merge in record order
    event_id: str
    key: str
    body: bytes
    queued_at: float
    hold_until: float
    held: bool  # recorded held and no released body seen yet
    attempts: int = 0
    next_at: float = 0.0
    out_until: float = 0.0  # handed to the dispatcher until then (its clock)


@dataclass(slots=True)
class _Partition:
    window: dict[bytes, _Entry] = field(default_factory=dict)  # stream id order
    claiming: bool = True  # still taking over the previous owner's pending entries
    cursor: bytes = b"0-0"


@dataclass(slots=True)
class _Queue:
    """One destination's consumer in this process."""

    ownership: Ownership
    parts: dict[int, _Partition] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def busy_partitions(self) -> set[int]:
        """Partitions with deliveries handed out and not settled: not given back meanwhile."""
        return {
            p for p, part in self.parts.items() if any(e.out_until for e in part.window.values())
        }


def _order(stream_id: bytes) -> tuple[int, int]:
    ms, _, seq = stream_id.partition(b"-")
    return int(ms), int(seq or 0)


class RedisOutbox:
    def __init__(self, client: Redis, config: StateConfig, spool: Spool, window: int = WINDOW):
        self.client = client
        self.config = config
        self.prefix = config.prefix
        self.spool = spool
        self.window = window
        self._queues: dict[str, _Queue] = {}
        self._groups: set[str] = set()  # destinations whose groups exist on every partition
        self._ack = client.register_script(_ACK)
        self._append_script = client.register_script(_APPEND)
        self._wire = Wire(client, config.timeout)  # the append's own lean connection
        self._spooled = 0  # records in the spool, counted before they are written
        self._mover: asyncio.Task[None] | None = None
        self._maintainer: asyncio.Task[None] | None = None
        self._down = False  # an outage was logged; log the recovery once too
        # Group commit: appends that arrive while one is in flight go together in the next one.
        self._waiting: list[tuple[list[Record], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._flushing = False  # a batch is being written (by its caller or the flusher)

    # -- keys ---------------------------------------------------------------------------------

    def _stream(self, p: int) -> str:
        return f"{self.prefix}out:{p}"

    def _key(self, kind: str, name: str) -> str:
        return f"{self.prefix}{kind}:{name}"

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._spooled = await self.spool.open()
        if self._spooled:
            self._start_mover()
        self._maintainer = asyncio.create_task(self._maintain(), name="outbox-maintain")

    async def close(self) -> None:
        """Finish the appends in flight, stop the background tasks and hand our partitions back
        so a successor starts at once."""
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        for task in (self._maintainer, self._mover):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        for queue in self._queues.values():
            try:
                await queue.ownership.release(list(queue.ownership.owned))
            except Outage:
                pass  # the leases expire by themselves
        await self._wire.close()
        await self.spool.close()

    def spooled(self) -> int:
        """Events waiting in the local spool for Redis (non-zero: degraded)."""
        return self._spooled

    def _outage(self, what: str, exc: BaseException) -> None:
        if not self._down:
            log.warning("Redis unreachable (%s: %s); events go to the spool", what, exc)
            self._down = True

    def _recovered(self) -> None:
        if self._down:
            log.warning("Redis answers again")
            self._down = False

    # -- appending ----------------------------------------------------------------------------

    async def append(
        self,
        events: Sequence[Event],
        routes: Sequence[Sequence[str]],
        now: float,
        hold_until: float,
    ) -> None:
        records = [Record.of(e, r, now, hold_until) for e, r in zip(events, routes, strict=True)]
        if not records:
            return
        if self._flushing:  # a batch is in flight: go in the next one, with whoever else waits
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting.append((records, done))
            await done
            return
        # Nothing in flight (a lone shopper's call): write it from here, without a task's hop.
        self._flushing = True
        try:
            await self._store(records)
        finally:
            self._hand_over()

    def _hand_over(self) -> None:
        """After a batch: the callers who queued meanwhile go in the next one (one in flight)."""
        if self._waiting:
            self._flusher = asyncio.create_task(self._flush(), name="outbox-append")
        else:
            self._flushing = False

    async def _flush(self) -> None:
        """Write what callers are waiting on in as few round trips as possible: one script call
        (or one spool transaction) per batch, however many callers it holds."""
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    await self._store([r for records, _ in batch for r in records])
                except BaseException as exc:  # noqa: BLE001 - each caller learns of it
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                else:
                    for _, done in batch:
                        if not done.done():
                            done.set_result(None)
        finally:
            self._flushing = False

    async def _store(self, records: list[Record]) -> None:
        if not self._spooled:  # while anything is spooled, newer events queue behind it
            try:
                await self._push(records)
                return
            except Outage as exc:
                self._outage("append", exc)
        self._spooled += len(records)
        try:
            await self.spool.add(records)
        except BaseException:
            self._spooled -= len(records)
            raise
        self._start_mover()

    async def _push(self, records: Sequence[Record]) -> None:
        """One round trip for the batch, all or nothing (one script): no half-appended batch
        to spool. One command instead of a MULTI of several halves what the client spends on a
        shopper's append, and each body crosses the wire once."""
        await self._ensure_groups({d for r in records for d in r.routes})
        streams: dict[str, int] = {}  # stream key -> its index in KEYS
        counts: dict[str, int] = {}
        args: list[bytes | str | int] = []
        for r in records:
            where = 0
            if r.routes:
                stream = self._stream(partition_of(r.key, self.config.partitions))
                where = streams.setdefault(stream, len(streams) + 2)
            args += [
                where,
                r.body,
                r.event_id,
                r.key,
                orjson.dumps(r.routes),
                repr(r.queued_at),
                repr(r.hold_until),
            ]
            for dest in r.routes:
                counts[dest] = counts.get(dest, 0) + 1
        keys = [self._key("recent", "events"), *streams]
        keys += [self._key("pending", dest) for dest in counts]
        await self._wire.run(
            self._append_script, keys, [RECENT, len(records), len(streams), *args, *counts.values()]
        )

    async def _ensure_groups(self, dests: Collection[str]) -> None:
        """A destination's groups exist before the first entry routed to it: trimming never drops
        an entry a group has not seen."""
        new = [d for d in dests if d not in self._groups]
        if not new:
            return
        pipe = self.client.pipeline(transaction=False)
        for dest in new:
            pipe.sadd(self._key("dests", "all"), dest)
            for p in range(self.config.partitions):
                pipe.xgroup_create(self._stream(p), dest, id="0", mkstream=True)
        for result in await pipe.execute(raise_on_error=False):
            if isinstance(result, Exception) and "BUSYGROUP" not in str(result):
                raise result
        self._groups.update(new)

    def _start_mover(self) -> None:
        if self._mover is None or self._mover.done():
            self._mover = asyncio.create_task(self._move(), name="outbox-spool-mover")

    async def _move(self) -> None:
        """Drain the spool into Redis, oldest first; wait and try again while Redis is away."""

        async def moved(batch: list[tuple[int, Record]]) -> None:
            await self.spool.drop([seq for seq, _ in batch])
            self._spooled -= len(batch)

        await move_back(
            lambda: self._spooled,
            lambda: self.spool.oldest(MOVE_BATCH),
            self._push,
            moved,
            lambda exc: self._outage("spool mover", exc),
        )
        self._recovered()

    async def release(self, events: Sequence[Event]) -> None:
        if not events:
            return
        if self._spooled:
            await self.spool.hydrate(events)
        pipe = self.client.pipeline(transaction=False)
        for event in events:
            pipe.set(self._key("ev", event.id), event.to_json(), ex=RELEASED_TTL)
        try:
            await pipe.execute()
        except Outage as exc:
            self._outage("release", exc)  # unspooled ones go as recorded after their hold

    # -- leasing ------------------------------------------------------------------------------

    def _queue(self, dest: str) -> _Queue:
        queue = self._queues.get(dest)
        if queue is None:
            ownership = Ownership(
                self.client,
                self.prefix,
                dest,
                self.config.replica,
                self.config.partitions,
                self.config.lease_seconds,
            )
            queue = self._queues[dest] = _Queue(ownership)
        return queue

    async def _refresh(self, queue: _Queue) -> None:
        async with queue.lock:
            gained, lost = await queue.ownership.refresh(queue.busy_partitions())
        for p in lost:
            queue.parts.pop(p, None)
        for p in gained:
            queue.parts[p] = _Partition()

    async def lease(
        self,
        destination: str,
        now: float,
        *,
        limit: int,
        per_key: int,
        max_keys: int | None,
        busy: Collection[str],
    ) -> Leased:
        queue = self._queue(destination)
        await self._ensure_groups([destination])
        if queue.ownership.stale():
            await self._refresh(queue)
        await self._fill(destination, queue)
        checked: set[bytes] = set()
        for _ in range(4):  # each pass settles the first held entry of more keys
            groups, next_due, unknown = self._pick(
                queue, now, busy, checked, limit=limit, per_key=per_key, max_keys=max_keys
            )
            if not unknown:
                break
            await self._look_up_releases(unknown)
            checked.update(e.id for e in unknown)
        leased: dict[str, list[Delivery]] = {}
        made = 0
        for key, picked in groups.items():
            for p, entry in picked:
                entry.out_until = now + self.config.lease_seconds
                ref = f"{p}:{entry.id.decode()}"
                delivery = Delivery(
                    ref, Event.from_json(entry.body), entry.attempts, entry.queued_at
                )
                leased.setdefault(key, []).append(delivery)
                made += 1
                if made % YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # a shopper's append may be answered meanwhile
        return Leased(leased, next_due)

    async def _fill(self, dest: str, queue: _Queue) -> None:
        """Read into every window with room: the previous owner's pending entries first, then
        (in the same call, once a take-over found nothing more to claim) new entries."""
        while await self._read(dest, queue):
            pass

    async def _read(self, dest: str, queue: _Queue) -> bool:
        """One pipelined read; true if a partition just finished claiming and may read on.
        Partitions taking over claim one by one (XAUTOCLAIM); new entries of every other
        partition with room come in one XREADGROUP over all their streams."""
        claiming: list[int] = []
        reading: dict[str, int] = {}  # stream -> partition
        count = self.window
        for p, part in queue.parts.items():
            room = self.window - len(part.window)
            if room < self.window // 4 and part.window:
                continue
            if part.claiming:
                claiming.append(p)
            else:
                reading[self._stream(p)] = p
                count = min(count, room)
        if not claiming and not reading:
            return False
        pipe = self.client.pipeline(transaction=False)
        for p in claiming:
            room = self.window - len(queue.parts[p].window)
            pipe.xautoclaim(
                self._stream(p),
                dest,
                self.config.replica,
                0,
                start_id=queue.parts[p].cursor,
                count=room,
            )
        if reading:
            pipe.xreadgroup(dest, self.config.replica, dict.fromkeys(reading, ">"), count=count)
        replies = await pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, ResponseError) and "NOGROUP" in str(reply):
                self._groups.discard(dest)  # Redis lost its data: recreate at the next lease
                return False
            if isinstance(reply, Exception):
                raise reply
        found: list[tuple[int, bool, list[Any]]] = []
        read_on = False
        for p, reply in zip(claiming, replies, strict=False):
            part = queue.parts.get(p)
            if part is None:  # handed over while we read: its next owner claims what we read
                continue
            part.cursor = reply[0]
            part.claiming = part.cursor != b"0-0"
            read_on = read_on or not part.claiming
            found.append((p, True, reply[1]))
        if reading:
            for stream, items in replies[-1] or []:
                p = reading[stream.decode()]
                if p in queue.parts:
                    found.append((p, False, items))
        claimed: list[tuple[int, _Entry]] = []
        unrouted: dict[int, list[bytes]] = {}
        for p, was_claimed, items in found:
            part = queue.parts[p]
            for stream_id, values in items:
                if not values:
                    continue  # deleted while pending
                if dest not in orjson.loads(values[b"d"]):
                    unrouted.setdefault(p, []).append(stream_id)
                    continue
                entry = _entry(stream_id, values)
                part.window[stream_id] = entry
                if was_claimed:
                    claimed.append((p, entry))
        await self._settle(dest, claimed, unrouted)
        return read_on

    async def _settle(
        self, dest: str, claimed: list[tuple[int, _Entry]], unrouted: dict[int, list[bytes]]
    ) -> None:
        """Ack what is not ours to send; give claimed entries the attempts made so far."""
        if not claimed and not unrouted:
            return
        pipe = self.client.pipeline(transaction=False)
        for p, ids in unrouted.items():
            pipe.xack(self._stream(p), dest, *ids)
        if claimed:
            fields = [f"{p}:{e.id.decode()}" for p, e in claimed]
            pipe.hmget(self._key("retry", dest), fields)
        replies = await pipe.execute()
        if claimed:
            for (_, entry), raw in zip(claimed, replies[-1], strict=True):
                if raw is not None:
                    state = orjson.loads(raw)
                    entry.attempts, entry.next_at = state["attempts"], state["next_at"]

    def _pick(
        self,
        queue: _Queue,
        now: float,
        busy: Collection[str],
        checked: set[bytes],
        *,
        limit: int,
        per_key: int,
        max_keys: int | None,
    ) -> tuple[dict[str, list[tuple[int, _Entry]]], float | None, list[_Entry]]:
        """The SQLite outbox's rule over the windows, in record order: the first entry of a key
        that cannot go now (held, backing off, or its key busy: in flight here) holds back every
        later entry of that key. An entry leased here but never acked or retried (a chain that
        stopped at a failure) may go again at once. Held entries whose release was not looked up in this call come back
        as `unknown` (and hold their key for this pass)."""
        blocked = set(busy)
        picked: dict[str, list[tuple[int, _Entry]]] = {}
        unknown: list[_Entry] = []
        next_due: float | None = None
        count = 0
        for p, entry in self._walk(queue):
            key = entry.key
            if key in blocked:
                continue
            wait: float | None = None
            if entry.held:
                if entry.id not in checked:
                    unknown.append(entry)
                    blocked.add(key)
                    continue
                if now < entry.hold_until:
                    wait = entry.hold_until
                else:
                    entry.held = False  # never released: goes as recorded
            if wait is None and entry.next_at > now:
                wait = entry.next_at
            if wait is not None or (key not in picked and len(picked) == max_keys):
                blocked.add(key)
                if wait is not None:
                    next_due = wait if next_due is None else min(next_due, wait)
                continue
            group = picked.setdefault(key, [])
            group.append((p, entry))
            count += 1
            if len(group) >= per_key:
                blocked.add(key)
            if count >= limit:
                break
        return picked, next_due, unknown

    def _walk(self, queue: _Queue) -> Iterator[tuple[int, _Entry]]:
        """Every window entry of the partitions we surely still hold, merged in record order."""
        windows = [_tagged(p, part) for p, part in queue.parts.items() if queue.ownership.holds(p)]
        for _, p, entry in heapq.merge(*windows, key=lambda item: item[0]):
            yield p, entry

    async def _look_up_releases(self, entries: list[_Entry]) -> None:
        bodies = await self.client.mget([self._key("ev", e.event_id) for e in entries])
        for entry, body in zip(entries, bodies, strict=True):
            if body is not None:
                entry.body, entry.held = body, False

    # -- settling -----------------------------------------------------------------------------

    def _entry_at(self, dest: str, ref: str) -> tuple[int, bytes, _Entry | None]:
        p_text, _, stream_id = ref.partition(":")
        p, sid = int(p_text), stream_id.encode()
        queue = self._queues.get(dest)
        part = queue.parts.get(p) if queue is not None else None
        return p, sid, part.window.get(sid) if part is not None else None

    async def ack(self, destination: str, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        by_partition: dict[int, list[bytes]] = {}
        for d in deliveries:
            p, sid, _ = self._entry_at(destination, d.ref)
            by_partition.setdefault(p, []).append(sid)
        # One script call per partition (a pipeline holding a script first asks Redis whether
        # the script exists: a second round trip for every ack).
        keys = [self._key(kind, destination) for kind in ("pending", "delivered", "retry")]
        await asyncio.gather(
            *(
                self._ack(keys=[self._stream(p), *keys], args=[destination, p, *ids])
                for p, ids in by_partition.items()
            )
        )
        self._forget(destination, by_partition)

    def _forget(self, dest: str, by_partition: dict[int, list[bytes]]) -> None:
        queue = self._queues.get(dest)
        for p, ids in by_partition.items():
            part = queue.parts.get(p) if queue is not None else None
            for sid in ids if part is not None else ():
                part.window.pop(sid, None)  # type: ignore[union-attr]

    async def retry(
        self, destination: str, delivery: Delivery, next_at: float, error: str, dead: bool
    ) -> None:
        p, sid, entry = self._entry_at(destination, delivery.ref)
        attempts = delivery.attempts + 1
        if not dead:
            state = {"attempts": attempts, "next_at": next_at, "error": error[:500]}
            await self.client.hset(
                self._key("retry", destination), delivery.ref, orjson.dumps(state)
            )
            if entry is not None:
                entry.attempts, entry.next_at, entry.out_until = attempts, next_at, 0.0
            return
        pipe = self.client.pipeline(transaction=True)
        pipe.xadd(
            self._key("dead", destination),
            {
                b"e": delivery.event.to_json(),
                b"i": delivery.event.id,
                b"k": delivery.event.order_key,
                b"q": repr(delivery.queued_at),
                b"a": attempts,
                b"r": error[:500],
            },
        )
        await self._ack(
            keys=[self._stream(p), self._key("pending", destination)],
            args=[destination, p, sid],
            client=pipe,
        )
        pipe.hdel(self._key("retry", destination), delivery.ref)
        await pipe.execute()
        self._forget(destination, {p: [sid]})

    async def replay_dead(self, destination: str | None = None) -> int:
        dests = [destination] if destination else await self._destinations()
        moved = 0
        for dest in dests:
            await self._ensure_groups([dest])
            while batch := await self.client.xrange(self._key("dead", dest), count=MOVE_BATCH):
                pipe = self.client.pipeline(transaction=True)
                for _, values in batch:
                    key = values[b"k"].decode()
                    pipe.xadd(
                        self._stream(partition_of(key, self.config.partitions)),
                        {
                            b"e": values[b"e"],
                            b"i": values[b"i"],
                            b"k": key,
                            b"d": orjson.dumps([dest]),
                            b"q": repr(time.time()),
                            b"h": b"0",
                        },
                    )
                pipe.incrby(self._key("pending", dest), len(batch))
                pipe.xdel(self._key("dead", dest), *(sid for sid, _ in batch))
                await pipe.execute()
                moved += len(batch)
        return moved

    async def _destinations(self) -> list[str]:
        return sorted(d.decode() for d in await self.client.smembers(self._key("dests", "all")))

    # -- reporting ----------------------------------------------------------------------------

    async def stats(self) -> dict[str, dict[str, int]]:
        dests = await self._destinations()
        pipe = self.client.pipeline(transaction=False)
        for dest in dests:
            pipe.get(self._key("pending", dest))
            pipe.get(self._key("delivered", dest))
            pipe.xlen(self._key("dead", dest))
        values = [int(v or 0) for v in await pipe.execute()]
        return {
            dest: {
                "pending": values[3 * i],
                "delivered": values[3 * i + 1],
                "dead": values[3 * i + 2],
            }
            for i, dest in enumerate(dests)
        }

    async def oldest(self) -> dict[str, float]:
        """By stream entry ids (their time is when the entry reached Redis): per destination the
        oldest entry its groups hold unacked or have not read yet. An unread entry may be one not
        routed to the destination; a destination with nothing pending reports nothing."""
        counts = await self.stats()
        waiting = {d for d, row in counts.items() if row["pending"]}
        if not waiting:
            return {}
        partitions = range(self.config.partitions)
        pipe = self.client.pipeline(transaction=False)
        for p in partitions:
            pipe.xinfo_groups(self._stream(p))
        infos = await pipe.execute(raise_on_error=False)
        pipe = self.client.pipeline(transaction=False)
        asked: list[str] = []
        for p, groups in zip(partitions, infos, strict=True):
            for group in groups if isinstance(groups, list) else ():
                dest = group["name"].decode()
                if dest in waiting:
                    pipe.xpending(self._stream(p), dest)
                    pipe.xrange(self._stream(p), min=b"(" + group["last-delivered-id"], count=1)
                    asked.append(dest)
        answers = await pipe.execute()
        out: dict[str, float] = {}
        for i, dest in enumerate(asked):
            pending, unread = answers[2 * i], answers[2 * i + 1]
            ids = ([pending["min"]] if pending["pending"] else []) + [sid for sid, _ in unread]
            for sid in ids:
                at = _order(sid)[0] / 1000
                out[dest] = min(out.get(dest, at), at)
        return out

    async def recent(self, n: int, after: str | None = None) -> list[tuple[str, Event]]:
        stream = self._key("recent", "events")
        if after:
            rows = await self.client.xrange(stream, min=f"({after}", count=n)
        else:
            rows = (await self.client.xrevrange(stream, count=n))[::-1]
        events = [Event.from_json(values[b"e"]) for _, values in rows]
        if not events:
            return []
        released = await self.client.mget([self._key("ev", e.id) for e in events])
        return [
            (sid.decode(), Event.from_json(body) if body is not None else event)
            for (sid, _), event, body in zip(rows, events, released, strict=True)
        ]

    # -- upkeep -------------------------------------------------------------------------------

    async def _maintain(self) -> None:
        """Keep our leases alive while deliveries run long; now and then trim the streams."""
        rounds = 0
        while True:
            await asyncio.sleep(self.config.lease_seconds / 3)
            rounds += 1
            try:
                for queue in list(self._queues.values()):
                    await self._refresh(queue)
                if rounds % TRIM_EVERY == 0:
                    await self.trim()
            except Outage as exc:
                log.debug("outbox upkeep failed: %s", exc)  # leases lapse; lease() says so
            except Exception:
                log.exception("outbox upkeep failed")  # keep renewing: the next round may work

    async def trim(self) -> None:
        """Cut each partition we consume to the oldest entry any group still needs."""
        partitions = sorted({p for q in self._queues.values() for p in q.ownership.owned})
        if not partitions:
            return
        pipe = self.client.pipeline(transaction=False)
        for p in partitions:
            pipe.xinfo_groups(self._stream(p))
        infos = await pipe.execute(raise_on_error=False)
        pipe = self.client.pipeline(transaction=False)
        asked: list[tuple[int, bytes]] = []
        for p, groups in zip(partitions, infos, strict=True):
            for group in groups if isinstance(groups, list) else ():
                pipe.xpending(self._stream(p), group["name"])
                asked.append((p, group["last-delivered-id"]))
        needed: dict[int, tuple[int, int]] = {}
        for (p, last), pending in zip(asked, await pipe.execute(), strict=True):
            oldest = _order(pending["min"]) if pending["pending"] else _order(last)
            needed[p] = min(needed.get(p, oldest), oldest)
        pipe = self.client.pipeline(transaction=False)
        for p, (ms, seq) in needed.items():
            pipe.xtrim(self._stream(p), minid=f"{ms}-{seq}", approximate=False)
        await pipe.execute()


def _tagged(p: int, part: _Partition) -> Iterator[tuple[tuple[int, int], int, _Entry]]:
    return ((entry.order, p, entry) for entry in part.window.values())


def _entry(stream_id: bytes, values: dict[bytes, bytes]) -> _Entry:
    queued_at, hold_until = float(values[b"q"]), float(values[b"h"])
    return _Entry(
        stream_id,
        _order(stream_id),
        values[b"i"].decode(),
        values[b"k"].decode(),
        values[b"e"],
        queued_at,
        hold_until,
        held=hold_until > queued_at,
    )


async def open_outbox(
    client: Redis, config: StateConfig, spool_outbox: Spool | None = None
) -> RedisOutbox:
    """The Redis outbox with its spool (`config.spool` unless one is given), tasks started."""
    outbox = RedisOutbox(client, config, spool_outbox or Spool(config.spool))
    await outbox.start()
    return outbox
