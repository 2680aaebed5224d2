"""The audit log: who signed in, saved, published, approved or rolled back what, and when.

Entries are only ever appended; the UI shows the newest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: float
    actor: str
    action: str  # e.g. "sign-in", "sign-in refused", "draft saved", "published"
    target: str = ""  # what it was done to: "draft 3f2a…", "v7", "user mia"
    detail: str = ""


class AuditLog(Protocol):
    async def add(self, entry: AuditEntry) -> None: ...

    async def recent(self, limit: int = 200) -> list[AuditEntry]:
        """The newest `limit` entries, newest first."""
