"""Abandoned carts, which OrderCloud has no trigger for.

The tracker keeps each visitor's current cart (its lines as last seen) with a version that every
change bumps. A sweep finds carts with lines, untouched for `abandon_after`, whose current version
has not been reported, and turns each into one `orders.abandoned` event; a submit or clear deletes
the cart. The sweep runs in one transaction with the outbox append, so a cart state is reported
exactly once even across a crash.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from state import events as ev
from state.events import Event

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

_LINE_FIELDS = ("ID", "ProductID", "Quantity", "UnitPrice", "LineTotal")


def line_changed(
    conn: sqlite3.Connection,
    event: Event,
    line: dict[str, Any],
    removed: bool,
    now: float,
) -> dict[str, Any] | None:
    """Apply one line add/update/removal to the visitor's cart; returns the line as it was."""
    row = conn.execute("SELECT lines FROM carts WHERE visitor = ?", (event.visitor,)).fetchone()
    lines: dict[str, Any] = json.loads(row[0]) if row else {}
    line_id = str(line.get("ID") or "")
    before = lines.get(line_id)
    if removed:
        lines.pop(line_id, None)
    elif line_id:
        kept = {k: line.get(k) for k in _LINE_FIELDS}
        kept["Product"] = {
            "ID": line.get("ProductID"),
            "Name": (line.get("Product") or {}).get("Name"),
        }
        lines[line_id] = kept
    conn.execute(
        "INSERT INTO carts (visitor, order_id, lines, updated_at, anonymous, browser_id)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (visitor) DO UPDATE SET"
        " order_id = coalesce(excluded.order_id, order_id), lines = excluded.lines,"
        " version = version + 1, updated_at = excluded.updated_at,"
        " anonymous = excluded.anonymous, browser_id = coalesce(excluded.browser_id, browser_id)",
        (
            event.visitor,
            event.data.get("order_id"),
            json.dumps(lines),
            now,
            int(event.anonymous),
            event.browser_id,
        ),
    )
    return before


def closed(conn: sqlite3.Connection, visitor: str) -> None:
    """The cart was submitted or cleared: nothing left to abandon."""
    conn.execute("DELETE FROM carts WHERE visitor = ?", (visitor,))


def moved(conn: sqlite3.Connection, anonymous: str, registered: str) -> None:
    """A transfer: the anonymous cart is now the registered visitor's."""
    conn.execute(
        "UPDATE OR REPLACE carts SET visitor = ?, anonymous = 0 WHERE visitor = ?",
        (registered, anonymous),
    )


def abandoned(
    conn: sqlite3.Connection, idle_since: float, now: float, limit: int = 500
) -> list[Event]:
    """Events for carts idle since `idle_since` not yet reported in this state; marks them reported."""
    rows = conn.execute(
        "SELECT visitor, order_id, lines, version, anonymous, browser_id, updated_at FROM carts"
        " WHERE updated_at < ? AND reported < version AND lines != '{}' LIMIT ?",
        (idle_since, limit),
    ).fetchall()
    out = []
    for visitor, order_id, lines_json, version, anonymous, browser_id, updated_at in rows:
        lines = list(json.loads(lines_json).values())
        value = sum(float(line.get("LineTotal") or 0) for line in lines)
        out.append(
            Event(
                type=ev.CART_ABANDONED,
                visitor=visitor,
                anonymous=bool(anonymous),
                occurred_at=now,
                browser_id=browser_id,
                data={
                    "order_id": order_id,
                    "lineitems": lines,
                    "value": value,
                    "items": len(lines),
                    "idle_since": updated_at,
                },
            )
        )
        conn.execute(
            "UPDATE carts SET reported = ? WHERE visitor = ? AND version = ?",
            (version, visitor, version),
        )
    return out
