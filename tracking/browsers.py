"""One CDP browser id per visitor, on every replica.

The storefront's own id (cookie or header) wins and is remembered; otherwise the visitor's
remembered id; otherwise a new one, minted through CDP's browser-create call (or a local UUID when
no CDP is configured), once per visitor even when several of its events settle at once. After a
login or transfer the anonymous visitor's id carries over, so CDP sees one journey.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from cachetools import LRUCache

from state.browserids import BrowserIds

Mint = Callable[[], Awaitable[str]]


async def local_uuid() -> str:
    return str(uuid.uuid4())


class Browsers:
    def __init__(
        self, store: BrowserIds, mint: Mint = local_uuid, cache_size: int = 50_000
    ) -> None:
        self.store = store
        self.mint = mint
        self._seen: LRUCache[str, str] = LRUCache(cache_size)  # ids this process settled
        self._minting: dict[str, asyncio.Future[str]] = {}

    def cached(self, visitor: str | None) -> str | None:
        """An id this process already settled for the visitor: lets `record` skip a step."""
        return self._seen.get(visitor) if visitor else None

    async def remember(self, visitor: str, browser_id: str) -> None:
        if self._seen.get(visitor) != browser_id:
            await self.store.put(visitor, browser_id)
            self._seen[visitor] = browser_id

    async def resolve(self, visitor: str | None, supplied: str | None = None) -> str:
        """The browser id for this visitor's event (minting one if need be)."""
        if supplied:
            if visitor:
                await self.remember(visitor, supplied)
            return supplied
        if not visitor:
            return await self.mint()
        known = self._seen.get(visitor) or await self.store.get(visitor)
        if known:
            self._seen[visitor] = known
            return known
        minting = self._minting.get(visitor)
        if minting is None:
            minting = asyncio.ensure_future(self._mint_for(visitor))
            self._minting[visitor] = minting
            minting.add_done_callback(lambda _: self._minting.pop(visitor, None))
        return await asyncio.shield(minting)

    async def _mint_for(self, visitor: str) -> str:
        minted = await self.mint()
        # Keep an id that arrived meanwhile (a login's carry-over wins over a fresh mint).
        kept = await self.store.put_new(visitor, minted)
        self._seen[visitor] = kept
        return kept

    async def carry_over(self, anonymous: str, registered: str) -> str | None:
        """Give the registered visitor the anonymous visitor's id; returns it (None if none)."""
        known = self._seen.get(anonymous) or await self.store.get(anonymous)
        if known:
            await self.remember(registered, known)
        return known
