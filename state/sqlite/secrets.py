"""Shared secrets in SQLite: the first INSERT wins, every caller reads the winner."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from state.sqlite.store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS ui_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
"""


def _shared(conn: sqlite3.Connection, name: str, value: str) -> str:
    conn.execute("INSERT OR IGNORE INTO ui_secrets VALUES (?, ?)", (name, value))
    return conn.execute("SELECT value FROM ui_secrets WHERE name = ?", (name,)).fetchone()[0]


class SqliteSecrets:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def shared(self, name: str, make: Callable[[], str]) -> str:
        value = make()
        return await self.store.write(lambda conn: _shared(conn, name, value))
