"""Counted failures in a time window, shared by every replica: the sign-in rate limit.

A window starts at the first failure and lasts `window` seconds; a success clears the count.
Shared through the state so an attacker gains nothing by spreading guesses over replicas.
"""

from __future__ import annotations

from typing import Protocol


class Attempts(Protocol):
    async def fail(self, key: str, window: float) -> int:
        """Count one failure for `key`; the failures in its current window, this one included."""

    async def failures(self, key: str) -> int:
        """Failures in `key`'s current window (0 once it has passed)."""

    async def clear(self, key: str) -> None: ...
