"""Visitor profiles in SQLite (the `ProfileStore` the decisions read), with a small read cache.

The tracker is the only writer, so a write-through LRU keeps reads on the request path to a dict
look-up for active visitors.
"""

from __future__ import annotations

import sqlite3
from functools import partial

import orjson
from cachetools import LRUCache, TTLCache

from tracking.profiles import Profile
from tracking.store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS profiles (
    visitor TEXT PRIMARY KEY,
    body TEXT NOT NULL
) WITHOUT ROWID;
"""


def load(conn: sqlite3.Connection, visitor_id: str) -> Profile | None:
    row = conn.execute("SELECT body FROM profiles WHERE visitor = ?", (visitor_id,)).fetchone()
    if row is None:
        return None
    fields = orjson.loads(row[0])
    known = set(Profile.__dataclass_fields__)
    return Profile(**{k: v for k, v in fields.items() if k in known})


def save(conn: sqlite3.Connection, profile: Profile) -> None:
    conn.execute(
        "INSERT INTO profiles (visitor, body) VALUES (?, ?)"
        " ON CONFLICT (visitor) DO UPDATE SET body = excluded.body",
        (
            profile.visitor_id,
            orjson.dumps({name: getattr(profile, name) for name in _FIELDS}).decode(),
        ),
    )


class SqliteProfileStore:
    def __init__(self, store: Store, cache_size: int = 50_000, miss_ttl: float = 5.0) -> None:
        self.store = store
        self._cache: LRUCache[str, Profile] = LRUCache(cache_size)
        # Visitors with no profile yet (every new shopper) would cost a read per list call;
        # a short memory of the miss covers them, and a write here replaces it at once.
        self._missing: TTLCache[str, bool] = TTLCache(cache_size, ttl=miss_ttl)

    async def get(self, visitor_id: str) -> Profile | None:
        cached = self._cache.get(visitor_id)
        if cached is not None:
            return _copy(cached)
        if visitor_id in self._missing:
            return None
        profile = await self.store.read(partial(load, visitor_id=visitor_id))
        if profile is not None:
            self._cache[visitor_id] = profile
            return _copy(profile)
        self._missing[visitor_id] = True
        return None

    async def put(self, profile: Profile) -> None:
        kept = _copy(profile)
        await self.store.write(partial(save, profile=kept))
        self._cache[profile.visitor_id] = kept
        self._missing.pop(profile.visitor_id, None)

    def cached(self, profile: Profile) -> None:
        """Refresh the cache after a profile was saved inside another transaction."""
        self._cache[profile.visitor_id] = _copy(profile)
        self._missing.pop(profile.visitor_id, None)


_FIELDS = tuple(Profile.__dataclass_fields__)


def _copy(profile: Profile) -> Profile:
    """Callers get their own copy to change; lists are the only mutable fields (asdict is slow)."""
    values = {name: getattr(profile, name) for name in _FIELDS}
    return Profile(**{k: list(v) if isinstance(v, list) else v for k, v in values.items()})
