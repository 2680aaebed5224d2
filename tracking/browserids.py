"""One CDP browser id per visitor, remembered in SQLite.

The storefront's own id (cookie or header) wins and is remembered; otherwise the visitor's
remembered id; otherwise a new one, minted through CDP's browser-create call (or a local UUID when
no CDP is configured). After login or transfer the anonymous visitor's id carries over, so CDP
sees one journey.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from functools import partial

from cachetools import LRUCache

from tracking.store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS browser_ids (
    visitor TEXT PRIMARY KEY,
    browser_id TEXT NOT NULL
) WITHOUT ROWID;
"""

Mint = Callable[[], Awaitable[str]]


async def local_uuid() -> str:
    return str(uuid.uuid4())


def _get(conn: sqlite3.Connection, visitor: str) -> str | None:
    row = conn.execute(
        "SELECT browser_id FROM browser_ids WHERE visitor = ?", (visitor,)
    ).fetchone()
    return row[0] if row else None


def _put(conn: sqlite3.Connection, visitor: str, browser_id: str) -> None:
    conn.execute(
        "INSERT INTO browser_ids (visitor, browser_id) VALUES (?, ?)"
        " ON CONFLICT (visitor) DO UPDATE SET browser_id = excluded.browser_id",
        (visitor, browser_id),
    )


def _put_new(conn: sqlite3.Connection, visitor: str, browser_id: str) -> str:
    conn.execute(
        "INSERT INTO browser_ids (visitor, browser_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
        (visitor, browser_id),
    )
    return _get(conn, visitor) or browser_id


class BrowserIds:
    def __init__(self, store: Store, mint: Mint = local_uuid, cache_size: int = 50_000) -> None:
        self.store = store
        self.mint = mint
        self._cache: LRUCache[str, str] = LRUCache(cache_size)
        self._minting: dict[str, asyncio.Future[str]] = {}

    def cached(self, visitor: str | None) -> str | None:
        """The remembered id if it is in memory: lets `record` skip the background step."""
        return self._cache.get(visitor) if visitor else None

    async def get(self, visitor: str) -> str | None:
        known = self._cache.get(visitor)
        if known is None:
            known = await self.store.read(partial(_get, visitor=visitor))
            if known is not None:
                self._cache[visitor] = known
        return known

    async def remember(self, visitor: str, browser_id: str) -> None:
        if self._cache.get(visitor) == browser_id:
            return
        await self.store.write(partial(_put, visitor=visitor, browser_id=browser_id))
        self._cache[visitor] = browser_id

    async def resolve(self, visitor: str | None, supplied: str | None = None) -> str:
        """The browser id for this visitor's event (minting one if need be)."""
        if supplied:
            if visitor:
                await self.remember(visitor, supplied)
            return supplied
        if not visitor:
            return await self.mint()
        known = await self.get(visitor)
        if known:
            return known
        # One mint per visitor even when several of its events settle at once.
        minting = self._minting.get(visitor)
        if minting is None:
            minting = asyncio.ensure_future(self._mint_for(visitor))
            self._minting[visitor] = minting
            minting.add_done_callback(lambda _: self._minting.pop(visitor, None))
        return await asyncio.shield(minting)

    async def _mint_for(self, visitor: str) -> str:
        known = await self.get(visitor)
        if known:
            return known
        minted = await self.mint()
        # Keep an id that arrived while minting (a login's carry-over wins over a fresh mint).
        kept = await self.store.write(partial(_put_new, visitor=visitor, browser_id=minted))
        self._cache[visitor] = kept
        return kept

    async def carry_over(self, anonymous: str, registered: str) -> str | None:
        """Give the registered visitor the anonymous visitor's id; returns it (None if none)."""
        known = await self.get(anonymous)
        if known:
            await self.remember(registered, known)
        return known
