"""Secrets every replica must agree on (the admin UI's session signing key), made once.

The first replica to ask stores a fresh value; every later ask, on any replica, gets that value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Secrets(Protocol):
    async def shared(self, name: str, make: Callable[[], str]) -> str:
        """The stored secret `name`, storing `make()` first when there is none (first wins)."""
