"""What the gateway has seen of each visitor: the facts local segments are defined over.

The tracker updates a profile as it records events; decisions read it. The store is an interface so
a shared (Redis) store can replace SQLite when many replicas run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(slots=True)
class Profile:
    visitor_id: str
    anonymous: bool = True
    buyer_id: str | None = None
    orders: int = 0  # orders submitted
    spent: float = 0.0  # sum of submitted order totals
    viewed_products: list[str] = field(default_factory=list)  # most recent last, bounded
    viewed_categories: list[str] = field(default_factory=list)  # most recent last, bounded
    cart_products: list[str] = field(default_factory=list)  # product IDs in the current cart
    cart_value: float = 0.0
    first_seen: float = 0.0  # epoch seconds
    last_seen: float = 0.0
    language: str | None = None
    currency: str | None = None
    browser_id: str | None = None  # CDP browser id remembered for this visitor


class ProfileStore(Protocol):
    async def get(self, visitor_id: str) -> Profile | None: ...

    async def put(self, profile: Profile) -> None: ...
