"""Each visitor's current cart as the tracker last saw it, for abandoned-cart events.

Every change bumps the cart's version. Replicas sweep concurrently: `reported` is a claim that
exactly one of them wins per version, and only the winner emits the event (a crash between the
claim and the append loses that one derived event: abandonment is a signal, not a purchase).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class IdleCart:
    visitor: str
    order_id: str | None
    lines: list[dict[str, Any]]
    version: int
    anonymous: bool
    browser_id: str | None
    updated_at: float


class Carts(Protocol):
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
        """Apply one line add/update/removal; return the line as it was before (or None)."""

    async def close(self, visitor: str) -> None:
        """The cart was submitted or cleared: nothing left to abandon."""

    async def move(self, anonymous: str, registered: str) -> None:
        """A transfer or login: the anonymous visitor's cart is now the registered one's."""

    async def idle(self, idle_since: float, limit: int = 500) -> list[IdleCart]:
        """Carts with lines, untouched since `idle_since`, whose current version is unreported."""

    async def reported(self, visitor: str, version: int) -> bool:
        """Claim that version of the visitor's cart for an abandoned event: True for the one
        caller that claims it first, False for every other (and for an older version)."""
