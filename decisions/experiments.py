"""Experiment exposures (who saw which variant) and the per-variant conversion report.

An exposure is recorded for every personalized response, control included, so variants compare
like with like. Exposures are buffered in memory on the request path and written in the
background; a full buffer drops (and counts) rather than slowing a shopper down.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from decisions.store import NO_ORDERS, ORDERS_SOURCE, VersionStore

EXPOSURE = "decision.exposed"


def exposure_event(
    visitor_id: str, table: str, rule: str, variant: str | None, version: int, route: str, at: float
) -> dict[str, Any]:
    """The event handed to `emit` (and stored): no tokens, no personal data beyond the visitor id."""
    return {
        "type": EXPOSURE,
        "visitor_id": visitor_id,
        "table": table,
        "rule": rule,
        "variant": variant or "default",
        "version": version,
        "route": route,
        "at": at,
    }


class ExposureBuffer:
    """Bounded in-memory queue between decide() and the background writer."""

    def __init__(self, limit: int = 10_000) -> None:
        self._items: deque[dict[str, Any]] = deque()
        self.limit = limit
        self.dropped = 0

    def add(self, event: dict[str, Any]) -> None:
        if len(self._items) >= self.limit:
            self.dropped += 1
            return
        self._items.append(event)

    def drain(self) -> list[dict[str, Any]]:
        items = list(self._items)
        self._items.clear()
        return items

    def __len__(self) -> int:
        return len(self._items)


def rows_of(events: list[dict[str, Any]]) -> list[tuple[float, str, str, str, str, int, str]]:
    return [
        (e["at"], e["visitor_id"], e["table"], e["rule"], e["variant"], e["version"], e["route"])
        for e in events
    ]


REPORT_SQL = """
WITH firsts AS (
    SELECT table_id, rule_id, variant, visitor_id, MIN(at) AS first_at, COUNT(*) AS n
    FROM decision_exposures GROUP BY table_id, rule_id, variant, visitor_id
), per_visitor AS (
    SELECT f.table_id, f.rule_id, f.variant, f.visitor_id, f.n,
           COUNT(DISTINCT o.order_id) AS orders, COALESCE(SUM(o.total), 0) AS revenue
    FROM firsts f
    LEFT JOIN {orders} o ON o.visitor_id = f.visitor_id AND o.submitted_at >= f.first_at
    GROUP BY f.table_id, f.rule_id, f.variant, f.visitor_id
)
SELECT table_id, rule_id, variant, SUM(n) AS exposures, COUNT(*) AS visitors,
       SUM(orders > 0) AS converted, SUM(orders) AS orders, ROUND(SUM(revenue), 2) AS revenue
FROM per_visitor GROUP BY table_id, rule_id, variant ORDER BY table_id, rule_id, variant
"""


def report(store: VersionStore) -> list[dict[str, Any]]:
    """Per (table, rule, variant): exposures, visitors, converted visitors, orders and revenue
    counted from each visitor's first exposure on."""
    orders = ORDERS_SOURCE if store.has(ORDERS_SOURCE) else NO_ORDERS
    out = []
    for row in store.query(REPORT_SQL.format(orders=orders)):
        item = dict(row)
        item["conversion_rate"] = (
            round(item["converted"] / item["visitors"], 4) if item["visitors"] else 0.0
        )
        out.append(item)
    return out


def format_report(rows: list[dict[str, Any]]) -> str:
    head = (
        "table",
        "rule",
        "variant",
        "exposures",
        "visitors",
        "converted",
        "rate",
        "orders",
        "revenue",
    )
    lines = [head] + [
        (
            r["table_id"],
            r["rule_id"],
            r["variant"],
            str(r["exposures"]),
            str(r["visitors"]),
            str(r["converted"]),
            f"{r['conversion_rate']:.2%}",
            str(r["orders"]),
            f"{r['revenue']:.2f}",
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines
    )
