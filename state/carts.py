"""Each visitor's current cart as the tracker last saw it, for abandoned-cart events.

Every change bumps the cart's version; a sweep reports each idle version at most once per
`reported` call, so a crash between reporting and marking gives a duplicate event (with the same
event id), never a lost one.
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

    async def reported(self, visitor: str, version: int) -> None:
        """That version of the visitor's cart has been turned into an event."""
