"""Who saw which variant of which rule, and what they bought afterwards: the experiment report.

Exposures are written durably before the shopper's answer completes; conversions come from
submitted orders as the tracker settles them. Both writes are idempotent per order, so
at-least-once settling never counts an order twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Exposure:
    visitor: str
    table: str
    rule: str
    variant: str
    version: int
    route: str
    at: float


class Exposures(Protocol):
    async def add(self, exposures: list[Exposure]) -> None: ...

    async def convert(self, visitor: str, order_id: str, total: float, at: float) -> None:
        """An order by this visitor: a conversion for every variant they saw before `at`."""

    async def report(self) -> list[dict[str, Any]]:
        """Per (table, rule, variant), ordered: `table_id`, `rule_id`, `variant`, `exposures`,
        `visitors`, `converted` (visitors with an order after their first exposure), `orders`,
        `revenue` and `conversion_rate`."""

    async def matched_since(self, since: float) -> dict[tuple[str, str], int]:
        """(table, rule) -> exposures at or after `since` (all variants): how often each rule
        matched lately. Redis counts per hour, so there `since` is rounded down to the hour."""
