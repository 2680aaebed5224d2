"""Profile writes, coalesced: what a burst of events teaches one visitor lands in one write.

A shopper browsing produces an event every few hundred milliseconds, and every one of them
updates the same profile. Writing each change alone would double the store writes the tracker
makes per event; instead each visitor's changes queue for `delay` seconds and go as one atomic
read-modify-write (the store's `update`). Decisions read profiles at most a second old anyway.
A process killed in between loses at most `delay` seconds of profile learning, never an event;
writes the store refuses (Redis away) wait and go again (see `ProfileWriter`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from state.profiles import Change, Profiles
from tracking.settle import chained

log = logging.getLogger(__name__)


RETRY_FIRST = 0.5  # seconds before the first retry of writes the store refused
RETRY_MAX = 30.0  # the longest wait between retries
RETRY_FOR = 600.0  # a visitor's changes are given up this long after their first failure
MAX_WAITING = 10_000  # visitors whose changes wait for the store; past it the oldest are dropped


class ProfileWriter:
    """Coalesced profile writes that outlive a short store outage: changes the store refused
    wait (in order, ahead of newer ones) and go again with backoff, for up to RETRY_FOR seconds
    and MAX_WAITING visitors. Without it, an order placed while Redis was away never made its
    shopper a repeat customer."""

    def __init__(
        self,
        profiles: Profiles,
        delay: float = 0.1,
        *,
        retry_first: float = RETRY_FIRST,
        max_waiting: int = MAX_WAITING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.profiles = profiles
        self.delay = delay
        self.retry_first = retry_first
        self.max_waiting = max_waiting
        self.clock = clock
        self.errors = 0  # failed writes (each retried, unless given up)
        self.dropped = 0  # visitors whose changes were given up
        self._pending: dict[str, list[Change]] = {}
        self._failing_since: dict[str, float] = {}  # visitor -> first failure of what waits
        self._backoff = 0.0  # 0 while the store takes writes
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False

    def add(self, visitor: str, change: Change) -> None:
        self._pending.setdefault(visitor, []).append(change)
        self._schedule()

    def _schedule(self) -> None:
        if self._closed:
            return
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._later(), name="profile-writes")

    async def _later(self) -> None:
        while self._pending:
            await asyncio.sleep(max(self.delay, self._backoff))
            await self.flush()

    async def flush(self, visitor: str | None = None) -> None:
        """Write what is queued (for one visitor, or for all)."""
        if visitor is not None:
            batch = {visitor: self._pending.pop(visitor)} if visitor in self._pending else {}
        else:
            batch, self._pending = self._pending, {}
        if not batch:
            return
        outcomes = await asyncio.gather(
            *(self.profiles.update(v, chained(changes)) for v, changes in batch.items()),
            return_exceptions=True,
        )
        failed = {
            v: changes
            for (v, changes), outcome in zip(batch.items(), outcomes, strict=True)
            if isinstance(outcome, Exception)
        }
        for v in batch.keys() - failed.keys():
            self._failing_since.pop(v, None)
        if not failed:
            self._backoff = 0.0
            return
        self.errors += len(failed)
        first = next(o for o in outcomes if isinstance(o, Exception))
        then = "lost (closing)" if self._closed else "retrying"
        log.warning("tracking: %d profile writes failed (%r); %s", len(failed), first, then)
        self._wait(failed)
        self._backoff = min(max(self._backoff * 2, self.retry_first), RETRY_MAX)
        self._schedule()

    def _wait(self, failed: dict[str, list[Change]]) -> None:
        """Queue refused changes ahead of what each visitor learned since; give up the ones
        failing too long, and the oldest visitors past the bound."""
        now = self.clock()
        for v, changes in failed.items():
            since = self._failing_since.setdefault(v, now)
            newer = self._pending.pop(v, [])
            if now - since > RETRY_FOR:
                self._give_up(v)
                if newer:
                    self._pending[v] = newer
            else:
                self._pending[v] = changes + newer
        while len(self._pending) > self.max_waiting:
            oldest = next(iter(self._pending))
            del self._pending[oldest]
            self._give_up(oldest)

    def _give_up(self, visitor: str) -> None:
        self.dropped += 1
        self._failing_since.pop(visitor, None)
        log.error("tracking: gave up the profile changes of a visitor (store unavailable)")

    async def close(self) -> None:
        """One last write of what is queued; what the store refuses now is lost (logged)."""
        self._closed = True
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self.flush()
