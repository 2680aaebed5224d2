"""Exposures and conversions in SQLite; the report is one query."""

from __future__ import annotations

import sqlite3
from functools import partial
from typing import Any

from state.exposures import Exposure
from state.sqlite.store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS decision_exposures (
    at REAL NOT NULL,
    visitor_id TEXT NOT NULL,
    table_id TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    variant TEXT NOT NULL,
    version INTEGER NOT NULL,
    route TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decision_exposures_by_rule
    ON decision_exposures (table_id, rule_id, variant);
CREATE INDEX IF NOT EXISTS decision_exposures_by_time ON decision_exposures (at);
CREATE TABLE IF NOT EXISTS decision_conversions (
    order_id TEXT PRIMARY KEY,
    visitor_id TEXT NOT NULL,
    total REAL NOT NULL,
    submitted_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS decision_conversions_by_visitor
    ON decision_conversions (visitor_id, submitted_at);
"""

REPORT = """
WITH firsts AS (
    SELECT table_id, rule_id, variant, visitor_id, MIN(at) AS first_at, COUNT(*) AS n
    FROM decision_exposures GROUP BY table_id, rule_id, variant, visitor_id
), per_visitor AS (
    SELECT f.table_id, f.rule_id, f.variant, f.visitor_id, f.n,
           COUNT(o.order_id) AS orders, COALESCE(SUM(o.total), 0) AS revenue
    FROM firsts f
    LEFT JOIN decision_conversions o
        ON o.visitor_id = f.visitor_id AND o.submitted_at >= f.first_at
    GROUP BY f.table_id, f.rule_id, f.variant, f.visitor_id
)
SELECT table_id, rule_id, variant, SUM(n) AS exposures, COUNT(*) AS visitors,
       SUM(orders > 0) AS converted, SUM(orders) AS orders, ROUND(SUM(revenue), 2) AS revenue
FROM per_visitor GROUP BY table_id, rule_id, variant ORDER BY table_id, rule_id, variant
"""


def _add(conn: sqlite3.Connection, exposures: list[Exposure]) -> None:
    conn.executemany(
        "INSERT INTO decision_exposures VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(e.at, e.visitor, e.table, e.rule, e.variant, e.version, e.route) for e in exposures],
    )


def _report(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    cursor = conn.execute(REPORT)
    names = [d[0] for d in cursor.description]
    out = []
    for row in cursor.fetchall():
        item = dict(zip(names, row))
        visitors = item["visitors"]
        item["conversion_rate"] = round(item["converted"] / visitors, 4) if visitors else 0.0
        out.append(item)
    return out


class SqliteExposures:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def add(self, exposures: list[Exposure]) -> None:
        if exposures:
            await self.store.write(partial(_add, exposures=exposures))

    async def convert(self, visitor: str, order_id: str, total: float, at: float) -> None:
        await self.store.write(
            lambda conn: conn.execute(
                "INSERT INTO decision_conversions VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (order_id, visitor, total, at),
            )
        )

    async def report(self) -> list[dict[str, Any]]:
        return await self.store.read(_report)

    async def matched_since(self, since: float) -> dict[tuple[str, str], int]:
        rows = await self.store.read(
            lambda conn: conn.execute(
                "SELECT table_id, rule_id, COUNT(*) FROM decision_exposures WHERE at >= ?"
                " GROUP BY table_id, rule_id",
                (since,),
            ).fetchall()
        )
        return {(table, rule): count for table, rule, count in rows}
