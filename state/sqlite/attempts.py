"""Failure counters in SQLite: a count and the end of its window per key."""

from __future__ import annotations

import sqlite3
import time

from state.sqlite.store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS ui_attempts (
    key TEXT PRIMARY KEY,
    count INTEGER NOT NULL,
    until REAL NOT NULL
) WITHOUT ROWID;
"""


def _fail(conn: sqlite3.Connection, key: str, window: float) -> int:
    now = time.time()
    row = conn.execute("SELECT count, until FROM ui_attempts WHERE key = ?", (key,)).fetchone()
    count = row[0] + 1 if row and row[1] > now else 1
    until = row[1] if row and row[1] > now else now + window
    conn.execute("INSERT OR REPLACE INTO ui_attempts VALUES (?, ?, ?)", (key, count, until))
    return count


class SqliteAttempts:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def fail(self, key: str, window: float) -> int:
        return await self.store.write(lambda conn: _fail(conn, key, window))

    async def failures(self, key: str) -> int:
        row = await self.store.read(
            lambda conn: conn.execute(
                "SELECT count FROM ui_attempts WHERE key = ? AND until > ?", (key, time.time())
            ).fetchone()
        )
        return row[0] if row else 0

    async def clear(self, key: str) -> None:
        await self.store.write(
            lambda conn: conn.execute("DELETE FROM ui_attempts WHERE key = ?", (key,))
        )
