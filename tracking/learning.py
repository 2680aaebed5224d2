"""Profile writes, coalesced: what a burst of events teaches one visitor lands in one write.

A shopper browsing produces an event every few hundred milliseconds, and every one of them
updates the same profile. Writing each change alone would double the store writes the tracker
makes per event; instead each visitor's changes queue for `delay` seconds and go as one atomic
read-modify-write (the store's `update`). Decisions read profiles at most a second old anyway.
A process killed in between loses at most `delay` seconds of profile learning, never an event.
"""

from __future__ import annotations

import asyncio
import logging

from state.profiles import Change, Profiles
from tracking.settle import chained

log = logging.getLogger(__name__)


class ProfileWriter:
    def __init__(self, profiles: Profiles, delay: float = 0.1) -> None:
        self.profiles = profiles
        self.delay = delay
        self.errors = 0
        self._pending: dict[str, list[Change]] = {}
        self._flusher: asyncio.Task[None] | None = None

    def add(self, visitor: str, change: Change) -> None:
        self._pending.setdefault(visitor, []).append(change)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._later(), name="profile-writes")

    async def _later(self) -> None:
        await asyncio.sleep(self.delay)
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
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        if failed:
            self.errors += len(failed)
            log.error("tracking: %d profile writes failed: %r", len(failed), failed[0])

    async def close(self) -> None:
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self.flush()
