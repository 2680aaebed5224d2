"""Carts in SQLite: each visitor's lines as last seen, versioned for the abandoned-cart sweep."""

from __future__ import annotations

import json
import sqlite3
from functools import partial
from typing import Any

from state.carts import IdleCart
from state.sqlite.store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS carts (
    visitor TEXT PRIMARY KEY,
    order_id TEXT,
    lines TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    reported INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL,
    anonymous INTEGER NOT NULL DEFAULT 1,
    browser_id TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS carts_idle ON carts (updated_at);
"""


def _change(
    conn: sqlite3.Connection,
    visitor: str,
    line: dict[str, Any],
    removed: bool,
    order_id: str | None,
    anonymous: bool,
    browser_id: str | None,
    now: float,
) -> dict[str, Any] | None:
    row = conn.execute("SELECT lines FROM carts WHERE visitor = ?", (visitor,)).fetchone()
    lines: dict[str, Any] = json.loads(row[0]) if row else {}
    line_id = str(line.get("ID") or "")
    before = lines.get(line_id)
    if removed:
        lines.pop(line_id, None)
    elif line_id:
        lines[line_id] = line
    conn.execute(
        "INSERT INTO carts (visitor, order_id, lines, updated_at, anonymous, browser_id)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (visitor) DO UPDATE SET"
        " order_id = coalesce(excluded.order_id, order_id), lines = excluded.lines,"
        " version = version + 1, updated_at = excluded.updated_at,"
        " anonymous = excluded.anonymous, browser_id = coalesce(excluded.browser_id, browser_id)",
        (visitor, order_id, json.dumps(lines), now, int(anonymous), browser_id),
    )
    return before


def _idle(conn: sqlite3.Connection, idle_since: float, limit: int) -> list[IdleCart]:
    rows = conn.execute(
        "SELECT visitor, order_id, lines, version, anonymous, browser_id, updated_at FROM carts"
        " WHERE updated_at < ? AND reported < version AND lines != '{}' LIMIT ?",
        (idle_since, limit),
    ).fetchall()
    return [
        IdleCart(visitor, order_id, list(json.loads(lines).values()), version, bool(anon), bid, at)
        for visitor, order_id, lines, version, anon, bid, at in rows
    ]


class SqliteCarts:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def change(
        self,
        visitor: str,
        line: dict[str, Any],
        *,
        removed: bool,
        order_id: str | None,
        anonymous: bool,
        browser_id: str | None,
        now: float,
    ) -> dict[str, Any] | None:
        return await self.store.write(
            partial(
                _change,
                visitor=visitor,
                line=line,
                removed=removed,
                order_id=order_id,
                anonymous=anonymous,
                browser_id=browser_id,
                now=now,
            )
        )

    async def close(self, visitor: str) -> None:
        await self.store.write(
            lambda conn: conn.execute("DELETE FROM carts WHERE visitor = ?", (visitor,))
        )

    async def move(self, anonymous: str, registered: str) -> None:
        await self.store.write(
            lambda conn: conn.execute(
                "UPDATE OR REPLACE carts SET visitor = ?, anonymous = 0 WHERE visitor = ?",
                (registered, anonymous),
            )
        )

    async def idle(self, idle_since: float, limit: int = 500) -> list[IdleCart]:
        return await self.store.read(partial(_idle, idle_since=idle_since, limit=limit))

    async def reported(self, visitor: str, version: int) -> bool:
        def claim(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE carts SET reported = ? WHERE visitor = ? AND version = ? AND reported < ?",
                (version, visitor, version, version),
            )
            return cur.rowcount == 1

        return await self.store.write(claim)
