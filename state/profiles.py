"""What the gateway has seen of each visitor: the facts local segments are defined over.

Tracking writes a profile as it settles events; decisions read it on the request path. Every
backend offers the same two calls, so one replica's update drives another's next decision.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

import orjson


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
    identified_at: float = 0.0  # the latest login or transfer: cached CDP segments predate it

    def to_json(self) -> bytes:
        return orjson.dumps({name: getattr(self, name) for name in _FIELDS})

    @classmethod
    def from_json(cls, raw: bytes | str) -> Profile:
        values: dict[str, Any] = orjson.loads(raw)
        return cls(**{k: v for k, v in values.items() if k in _KNOWN})

    def copy(self) -> Profile:
        """An independent copy: lists are the only mutable fields (asdict is slow)."""
        values = {name: getattr(self, name) for name in _FIELDS}
        return Profile(**{k: list(v) if isinstance(v, list) else v for k, v in values.items()})


_FIELDS = tuple(f.name for f in fields(Profile))
_KNOWN = frozenset(_FIELDS)

Change = Callable[[Profile | None], Profile | None]


class Profiles(Protocol):
    async def get(self, visitor_id: str) -> Profile | None:
        """The visitor's profile, at most a second older than the newest write anywhere."""

    async def update(self, visitor_id: str, change: Change) -> Profile | None:
        """Apply `change` to the stored profile atomically (no lost updates between replicas)
        and store what it returns (None: leave it as it was). Returns the stored profile."""
