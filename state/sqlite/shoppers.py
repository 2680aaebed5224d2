"""Saved test shoppers in SQLite, one JSON row each."""

from __future__ import annotations

from state.shoppers import SavedShopper
from state.sqlite.store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS ui_shoppers (
    name TEXT PRIMARY KEY,
    body BLOB NOT NULL
) WITHOUT ROWID;
"""


class SqliteShoppers:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def put(self, shopper: SavedShopper) -> None:
        await self.store.write(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO ui_shoppers VALUES (?, ?)",
                (shopper.name, shopper.to_json()),
            )
        )

    async def get(self, name: str) -> SavedShopper | None:
        row = await self.store.read(
            lambda conn: conn.execute(
                "SELECT body FROM ui_shoppers WHERE name = ?", (name,)
            ).fetchone()
        )
        return SavedShopper.from_json(row[0]) if row else None

    async def remove(self, name: str) -> bool:
        return await self.store.write(
            lambda conn: (
                conn.execute("DELETE FROM ui_shoppers WHERE name = ?", (name,)).rowcount > 0
            )
        )

    async def list(self) -> list[SavedShopper]:
        rows = await self.store.read(
            lambda conn: conn.execute("SELECT body FROM ui_shoppers ORDER BY name").fetchall()
        )
        return [SavedShopper.from_json(row[0]) for row in rows]
