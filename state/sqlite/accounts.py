"""Admin UI accounts in SQLite."""

from __future__ import annotations

from state.accounts import Account
from state.sqlite.store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS ui_accounts (
    username TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at REAL NOT NULL
) WITHOUT ROWID;
"""


class SqliteAccounts:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def put(self, account: Account) -> None:
        await self.store.write(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO ui_accounts VALUES (?, ?, ?, ?)",
                (account.username, account.role, account.password_hash, account.created_at),
            )
        )

    async def get(self, username: str) -> Account | None:
        row = await self.store.read(
            lambda conn: conn.execute(
                "SELECT * FROM ui_accounts WHERE username = ?", (username,)
            ).fetchone()
        )
        return Account(*row) if row else None

    async def remove(self, username: str) -> bool:
        return await self.store.write(
            lambda conn: (
                conn.execute("DELETE FROM ui_accounts WHERE username = ?", (username,)).rowcount > 0
            )
        )

    async def list(self) -> list[Account]:
        rows = await self.store.read(
            lambda conn: conn.execute("SELECT * FROM ui_accounts ORDER BY username").fetchall()
        )
        return [Account(*row) for row in rows]
