"""The experiment report as a marketer reads it: per table, rule and variant, exposures, visitors,
conversion rate, orders and revenue (the numbers come from the shared `Exposures` store)."""

from __future__ import annotations

from typing import Any


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
