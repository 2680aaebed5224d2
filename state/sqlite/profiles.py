"""Visitor profiles in SQLite, with a read cache no older than a second.

Other processes may write the same file, so a cached profile is trusted for `fresh_for` seconds
only: a change made through another worker reaches this one's next decision within that.
"""

from __future__ import annotations

import sqlite3
from functools import partial

from cachetools import TTLCache

from state.profiles import Change, Profile
from state.sqlite.store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS profiles (
    visitor TEXT PRIMARY KEY,
    body TEXT NOT NULL
) WITHOUT ROWID;
"""


def load(conn: sqlite3.Connection, visitor_id: str) -> Profile | None:
    row = conn.execute("SELECT body FROM profiles WHERE visitor = ?", (visitor_id,)).fetchone()
    return Profile.from_json(row[0]) if row else None


def _update(conn: sqlite3.Connection, visitor_id: str, change: Change) -> Profile | None:
    before = load(conn, visitor_id)
    after = change(before.copy() if before else None)
    if after is None:
        return before
    conn.execute(
        "INSERT INTO profiles (visitor, body) VALUES (?, ?)"
        " ON CONFLICT (visitor) DO UPDATE SET body = excluded.body",
        (visitor_id, after.to_json().decode()),
    )
    return after


class SqliteProfiles:
    def __init__(self, store: Store, cache_size: int = 50_000, fresh_for: float = 1.0) -> None:
        self.store = store
        self._cache: TTLCache[str, Profile | None] = TTLCache(cache_size, ttl=fresh_for)

    async def get(self, visitor_id: str) -> Profile | None:
        if visitor_id in self._cache:
            cached = self._cache[visitor_id]
            return cached.copy() if cached else None
        profile = await self.store.read(partial(load, visitor_id=visitor_id))
        self._cache[visitor_id] = profile  # misses too: a new shopper costs one read a second
        return profile.copy() if profile else None

    async def update(self, visitor_id: str, change: Change) -> Profile | None:
        stored = await self.store.write(partial(_update, visitor_id=visitor_id, change=change))
        self._cache[visitor_id] = stored.copy() if stored else None
        return stored
