"""Named accounts for the admin UI: who may edit drafts and who may publish.

Only the password's argon2 hash is stored. Accounts are read on every UI request, so removing
one (or changing a role) takes effect at once on every replica.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

EDITOR = "editor"  # drafts: create, edit, ask for approval
PUBLISHER = "publisher"  # also publish, roll back and approve
ROLES = (EDITOR, PUBLISHER)


@dataclass(frozen=True, slots=True)
class Account:
    username: str
    role: str
    password_hash: str
    created_at: float


class Accounts(Protocol):
    async def put(self, account: Account) -> None:
        """Add the account, or replace the one with that username."""

    async def get(self, username: str) -> Account | None: ...

    async def remove(self, username: str) -> bool:
        """True if there was such an account."""

    async def list(self) -> list[Account]:
        """Sorted by username."""
