"""One CDP browser id per visitor, shared by every replica."""

from __future__ import annotations

from typing import Protocol


class BrowserIds(Protocol):
    async def get(self, visitor: str) -> str | None: ...

    async def put(self, visitor: str, browser_id: str) -> None:
        """Remember this id for the visitor (the storefront's own id wins over a minted one)."""

    async def put_new(self, visitor: str, browser_id: str) -> str:
        """Remember this id unless the visitor has one already; return the id kept."""
