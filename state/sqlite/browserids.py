"""Browser ids in SQLite; a remembered id never changes behind a reader's back but through `put`,
so reads are cached briefly."""

from __future__ import annotations

import sqlite3
from functools import partial

from cachetools import TTLCache

from state.sqlite.store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS browser_ids (
    visitor TEXT PRIMARY KEY,
    browser_id TEXT NOT NULL
) WITHOUT ROWID;
"""


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


class SqliteBrowserIds:
    def __init__(self, store: Store, cache_size: int = 50_000, fresh_for: float = 1.0) -> None:
        self.store = store
        self._cache: TTLCache[str, str] = TTLCache(cache_size, ttl=fresh_for)

    async def get(self, visitor: str) -> str | None:
        known = self._cache.get(visitor)
        if known is None:
            known = await self.store.read(partial(_get, visitor=visitor))
            if known is not None:
                self._cache[visitor] = known
        return known

    async def put(self, visitor: str, browser_id: str) -> None:
        await self.store.write(partial(_put, visitor=visitor, browser_id=browser_id))
        self._cache[visitor] = browser_id

    async def put_new(self, visitor: str, browser_id: str) -> str:
        kept = await self.store.write(partial(_put_new, visitor=visitor, browser_id=browser_id))
        self._cache[visitor] = kept
        return kept
