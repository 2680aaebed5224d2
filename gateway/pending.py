"""Shoppers whose login or transfer is still being read into their profile, in this process.

A login's order history arrives in the background (hydration of its identified event), so a list
call made right after the login would otherwise be decided on the profile as it was before it.
Tracking marks the shopper's ordering key when it records the login and clears it once the profile
is written; decisions wait for that within their budget. Neither imports the other: the
composition root hands both the same instance.
"""

from __future__ import annotations

import asyncio


class PendingProfiles:
    """Ordering keys (`user:{usr}`, `anon-{orderid}`) with a profile update under way."""

    def __init__(self) -> None:
        self._pending: dict[str, tuple[int, asyncio.Event]] = {}

    def begin(self, key: str) -> None:
        """A login or transfer of `key` was recorded; its profile is not written yet."""
        count, done = self._pending.get(key) or (0, asyncio.Event())
        self._pending[key] = (count + 1, done)

    def end(self, key: str) -> None:
        """One update of `key` finished (or failed): waiters go on once none is left."""
        entry = self._pending.get(key)
        if entry is None:
            return
        count, done = entry
        if count > 1:
            self._pending[key] = (count - 1, done)
            return
        del self._pending[key]
        done.set()

    def pending(self, key: str | None) -> bool:
        return key is not None and key in self._pending

    async def settled(self, key: str | None, timeout: float) -> bool:
        """Wait until no update of `key` is under way, at most `timeout` seconds; True if none is."""
        entry = self._pending.get(key) if key is not None else None
        if entry is None:
            return True
        try:
            await asyncio.wait_for(entry[1].wait(), max(timeout, 0.0))
        except TimeoutError:
            return False
        return True
