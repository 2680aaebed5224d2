"""Saved test shoppers: made-up visitors a marketer previews the tables as.

A test shopper carries the profile facts local segments test (orders, spend, what was viewed and
is in the cart), the request context (device, country, time of day) and segments to assume (a
CDP segment, say), so a preview needs no real shopper.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import orjson


@dataclass(frozen=True, slots=True)
class SavedShopper:
    name: str
    anonymous: bool = False
    buyer: str | None = None
    orders: int = 0
    spent: float = 0.0
    viewed_categories: tuple[str, ...] = field(default_factory=tuple)
    cart_products: tuple[str, ...] = field(default_factory=tuple)
    segments: tuple[str, ...] = field(default_factory=tuple)  # assumed members (e.g. CDP ones)
    device: str = "desktop"
    country: str | None = None
    language: str | None = None
    hour: int | None = None  # UTC hour of day to preview at; None: now
    note: str = ""

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> SavedShopper:
        values: dict[str, Any] = orjson.loads(raw)
        for name in ("viewed_categories", "cart_products", "segments"):
            values[name] = tuple(values.get(name) or ())
        return cls(**values)


class Shoppers(Protocol):
    async def put(self, shopper: SavedShopper) -> None:
        """Save it under its name (replacing one of that name)."""

    async def get(self, name: str) -> SavedShopper | None: ...

    async def remove(self, name: str) -> bool: ...

    async def list(self) -> list[SavedShopper]:
        """Sorted by name."""
