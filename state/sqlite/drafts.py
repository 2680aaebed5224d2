"""Drafts in SQLite: one JSON row per draft; a change is read, checked and written inside the
writer's transaction, so it is a compare-and-set across every process sharing the file."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Collection
from functools import partial
from typing import Any

from state.drafts import Draft
from state.sqlite.store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS ui_drafts (
    id TEXT PRIMARY KEY,
    updated_at REAL NOT NULL,
    body BLOB NOT NULL
) WITHOUT ROWID;
"""


def _get(conn: sqlite3.Connection, draft_id: str) -> Draft | None:
    row = conn.execute("SELECT body FROM ui_drafts WHERE id = ?", (draft_id,)).fetchone()
    return Draft.from_json(row[0]) if row else None


def _put(conn: sqlite3.Connection, draft: Draft) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO ui_drafts VALUES (?, ?, ?)",
        (draft.id, draft.updated_at, draft.to_json()),
    )


def _change(
    conn: sqlite3.Connection, draft_id: str, expect: Collection[str], changes: dict[str, Any]
) -> Draft | None:
    current = _get(conn, draft_id)
    if current is None or current.state not in expect:
        return None
    changed = dataclasses.replace(current, **changes)
    _put(conn, changed)
    return changed


class SqliteDrafts:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def create(self, draft: Draft) -> None:
        await self.store.write(partial(_put, draft=draft))

    async def get(self, draft_id: str) -> Draft | None:
        return await self.store.read(partial(_get, draft_id=draft_id))

    async def list(self) -> list[Draft]:
        rows = await self.store.read(
            lambda conn: conn.execute(
                "SELECT body FROM ui_drafts ORDER BY updated_at DESC"
            ).fetchall()
        )
        return [Draft.from_json(row[0]) for row in rows]

    async def change(self, draft_id: str, expect: Collection[str], **changes: Any) -> Draft | None:
        return await self.store.write(
            partial(_change, draft_id=draft_id, expect=tuple(expect), changes=changes)
        )
