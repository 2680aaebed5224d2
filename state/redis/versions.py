"""Decision table versions on Redis: numbered under WATCH, announced on pub/sub, polled too.

`{prefix}version:latest` holds the newest number; each version is a hash `{prefix}version:{n}`;
`{prefix}version:author:{author}` holds that author's newest source hash for `unless_repeated`.
An add WATCHes the latest number, so replicas publishing at once get consecutive numbers (the
loser of a race retries with the next one). Pub/sub makes a new version visible at once; it drops
messages across disconnects, so `changes()` also polls the latest number every second.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline, PubSub
from redis.exceptions import RedisError

from state.versions import Version, source_hash, unified_diff

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0  # the fallback's period: a version is seen within this even without pub/sub
_SUMMARY = ("created_at", "author", "comment")


class RedisTableVersions:
    def __init__(self, client: Redis, prefix: str, *, poll_seconds: float = POLL_SECONDS) -> None:
        self.client = client
        self.prefix = prefix
        self.poll_seconds = poll_seconds
        self.latest_key = f"{prefix}version:latest"
        self.channel = f"{prefix}versions"

    def _key(self, number: int) -> str:
        return f"{self.prefix}version:{number}"

    def _author_key(self, author: str) -> str:
        return f"{self.prefix}version:author:{author}"

    async def add(
        self, source: str, author: str, comment: str = "", *, unless_repeated: bool = False
    ) -> Version | None:
        digest = source_hash(source)
        author_key = self._author_key(author)

        async def attempt(pipe: Pipeline) -> Version | None:
            # The author key changes only with the latest number, so watching that covers both.
            if unless_repeated and (await pipe.get(author_key)) == digest.encode():
                pipe.multi()
                return None
            raw = await pipe.get(self.latest_key)
            previous = int(raw) if raw is not None else 0
            old = await pipe.hget(self._key(previous), "source") if previous else None
            number = previous + 1
            old_name = f"v{previous}" if previous else "empty"
            diff = unified_diff(old.decode() if old else "", source, old_name, f"v{number}")
            version = Version(number, time.time(), author, comment, source, diff)
            pipe.multi()
            pipe.hset(
                self._key(number),
                mapping={
                    "created_at": repr(version.created_at),
                    "author": author,
                    "comment": comment,
                    "source": source,
                    "source_hash": digest,
                    "diff": diff,
                },
            )
            pipe.set(author_key, digest)
            pipe.set(self.latest_key, number)
            pipe.publish(self.channel, number)
            return version

        return await self.client.transaction(attempt, self.latest_key, value_from_callable=True)

    async def import_version(self, version: Version) -> bool:
        """Under the same WATCH as `add`; the latest number and the author's newest hash move
        only forward, so importing into a store with newer versions leaves those live."""
        key = self._key(version.version)
        digest = source_hash(version.source)

        async def attempt(pipe: Pipeline) -> bool:
            taken = await pipe.exists(key)
            raw = await pipe.get(self.latest_key)
            latest = int(raw) if raw is not None else 0
            pipe.multi()
            if taken:
                return False
            pipe.hset(
                key,
                mapping={
                    "created_at": repr(version.created_at),
                    "author": version.author,
                    "comment": version.comment,
                    "source": version.source,
                    "source_hash": digest,
                    "diff": version.diff,
                },
            )
            if version.version > latest:
                pipe.set(self._author_key(version.author), digest)
                pipe.set(self.latest_key, version.version)
                pipe.publish(self.channel, version.version)
            return True

        return await self.client.transaction(
            attempt, self.latest_key, key, value_from_callable=True
        )

    async def get(self, number: int) -> Version | None:
        if number < 1:
            return None
        row = await self.client.hgetall(self._key(number))
        if not row:
            return None
        return Version(
            number,
            float(row[b"created_at"]),
            row[b"author"].decode(),
            row[b"comment"].decode(),
            row[b"source"].decode(),
            row[b"diff"].decode(),
        )

    async def latest_number(self) -> int | None:
        raw = await self.client.get(self.latest_key)
        return int(raw) if raw is not None else None

    async def list(self) -> list[Version]:
        newest = await self.latest_number() or 0
        numbers = range(newest, 0, -1)
        async with self.client.pipeline(transaction=False) as pipe:
            for number in numbers:
                pipe.hmget(self._key(number), _SUMMARY)
            rows = await pipe.execute()
        return [
            Version(number, float(created_at), author.decode(), comment.decode(), "", "")
            for number, (created_at, author, comment) in zip(numbers, rows, strict=True)
        ]

    async def changes(self, after: int | None = None) -> AsyncIterator[int]:
        """Every number above `after` (default: the newest when iteration starts), once each, in
        increasing order. Redis errors (a restart, a failover) are logged and waited out."""
        seen: int | None = after
        pubsub: PubSub | None = None
        try:
            while True:
                try:
                    if seen is None:
                        seen = await self.latest_number() or 0
                    if pubsub is None:
                        pubsub = self.client.pubsub()
                        await pubsub.subscribe(self.channel)
                    # A message only wakes us early: the number is read from the source of truth.
                    await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=self.poll_seconds
                    )
                    newest = await self.latest_number() or 0
                except (RedisError, OSError) as error:
                    log.warning("table version changes: %s; retrying", error)
                    await _discard(pubsub)
                    pubsub = None
                    await asyncio.sleep(self.poll_seconds)
                    continue
                while seen < newest:
                    seen += 1
                    yield seen
        finally:
            await _discard(pubsub)


async def _discard(pubsub: PubSub | None) -> None:
    if pubsub is None:
        return
    try:
        await pubsub.aclose()
    except (RedisError, OSError):
        log.debug("closing a broken pub/sub connection failed", exc_info=True)
