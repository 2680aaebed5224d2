"""The audit log in SQLite: an append-only table, numbered in commit order."""

from __future__ import annotations

from state.audit import AuditEntry
from state.sqlite.store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS ui_audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""


class SqliteAuditLog:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def add(self, entry: AuditEntry) -> None:
        await self.store.write(
            lambda conn: conn.execute(
                "INSERT INTO ui_audit (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
                (entry.at, entry.actor, entry.action, entry.target, entry.detail),
            )
        )

    async def recent(self, limit: int = 200) -> list[AuditEntry]:
        rows = await self.store.read(
            lambda conn: conn.execute(
                "SELECT at, actor, action, target, detail FROM ui_audit ORDER BY seq DESC LIMIT ?",
                (limit,),
            ).fetchall()
        )
        return [AuditEntry(*row) for row in rows]
