"""Table versions in SQLite. Numbering happens inside the writer's `BEGIN IMMEDIATE`, which holds
the file's write lock, so processes sharing the file never clash; others see a new version by
polling the newest number (about once a second)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from functools import partial

from state.sqlite.store import Store
from state.versions import MAX_VERSION, Version, source_hash, unified_diff

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS decision_versions (
    version INTEGER PRIMARY KEY,
    created_at REAL NOT NULL,
    author TEXT NOT NULL,
    comment TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL,
    source_hash TEXT NOT NULL,
    diff TEXT NOT NULL
);
"""

_COLUMNS = "version, created_at, author, comment, source, diff"


def _add(
    conn: sqlite3.Connection, source: str, author: str, comment: str, unless_repeated: bool
) -> Version | None:
    digest = source_hash(source)
    if unless_repeated:
        row = conn.execute(
            "SELECT source_hash FROM decision_versions WHERE author = ?"
            " ORDER BY version DESC LIMIT 1",
            (author,),
        ).fetchone()
        if row is not None and row[0] == digest:
            return None
    prev = conn.execute(
        "SELECT version, source FROM decision_versions ORDER BY version DESC LIMIT 1"
    ).fetchone()
    number = prev[0] + 1 if prev else 1
    diff = unified_diff(
        prev[1] if prev else "", source, f"v{prev[0]}" if prev else "empty", f"v{number}"
    )
    now = time.time()
    conn.execute(
        "INSERT INTO decision_versions VALUES (?, ?, ?, ?, ?, ?, ?)",
        (number, now, author, comment, source, digest, diff),
    )
    return Version(number, now, author, comment, source, diff)


def _import(conn: sqlite3.Connection, version: Version) -> bool:
    cur = conn.execute(
        "INSERT INTO decision_versions VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (
            version.version,
            version.created_at,
            version.author,
            version.comment,
            version.source,
            source_hash(version.source),
            version.diff,
        ),
    )
    return cur.rowcount == 1


def _get(conn: sqlite3.Connection, number: int) -> Version | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM decision_versions WHERE version = ?", (number,)
    ).fetchone()
    return Version(*row) if row else None


def _list(conn: sqlite3.Connection) -> list[Version]:
    rows = conn.execute(
        "SELECT version, created_at, author, comment, '', '' FROM decision_versions"
        " ORDER BY version DESC"
    ).fetchall()
    return [Version(*row) for row in rows]


def _latest(conn: sqlite3.Connection) -> int | None:
    return conn.execute("SELECT MAX(version) FROM decision_versions").fetchone()[0]


class SqliteVersions:
    def __init__(self, store: Store, poll: float = 1.0) -> None:
        self.store = store
        self.poll = poll

    async def add(
        self, source: str, author: str, comment: str = "", *, unless_repeated: bool = False
    ) -> Version | None:
        return await self.store.write(
            partial(
                _add, source=source, author=author, comment=comment, unless_repeated=unless_repeated
            )
        )

    async def import_version(self, version: Version) -> bool:
        return await self.store.write(partial(_import, version=version))

    async def get(self, number: int) -> Version | None:
        if not 1 <= number <= MAX_VERSION:
            return None
        return await self.store.read(partial(_get, number=number))

    async def latest_number(self) -> int | None:
        return await self.store.read(_latest)

    async def list(self) -> list[Version]:
        return await self.store.read(_list)

    async def changes(self, after: int | None = None) -> AsyncIterator[int]:
        seen = after
        while True:
            try:
                if seen is None:
                    seen = await self.latest_number() or 0
                else:
                    await asyncio.sleep(self.poll)
                newest = await self.latest_number() or 0
            except sqlite3.Error:
                log.warning("table version changes: store unavailable; retrying", exc_info=True)
                await asyncio.sleep(self.poll)
                continue
            while seen < newest:
                seen += 1
                yield seen
