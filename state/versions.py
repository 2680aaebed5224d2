"""Every published version of the decision tables: the source of truth for what is live.

The newest version is live on every replica. Versions are never changed or deleted; a rollback
publishes an old source again as a new version.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Version:
    version: int
    created_at: float
    author: str
    comment: str
    source: str
    diff: str

    def summary(self) -> dict[str, object]:
        return {
            "version": self.version,
            "created_at": self.created_at,
            "author": self.author,
            "comment": self.comment,
        }


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def unified_diff(old: str, new: str, old_name: str, new_name: str) -> str:
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), old_name, new_name
        )
    )


MAX_VERSION = 2**63 - 1  # any number above is no version (and never reaches a database)


class TableVersions(Protocol):
    async def add(
        self, source: str, author: str, comment: str = "", *, unless_repeated: bool = False
    ) -> Version | None:
        """Append a version numbered after the newest (no gaps or clashes between replicas),
        its diff against the one before. With `unless_repeated`, nothing is added (None) when
        this author's newest version has the same source: a file edit seen by several replicas
        is imported once."""

    async def import_version(self, version: Version) -> bool:
        """Store a version copied from another store as it was (number, time, author, comment,
        source, diff), announced like a new one; False, and nothing changed, when that number is
        taken. For `ocgateway store migrate`, which copies a history in increasing order."""

    async def get(self, number: int) -> Version | None: ...

    async def latest_number(self) -> int | None: ...

    async def list(self) -> list[Version]:
        """Newest first, without sources (they can be large)."""

    def changes(self, after: int | None = None) -> AsyncIterator[int]:
        """Every version number above `after` (default: the newest when iteration starts), once
        each, in increasing order, as versions are published anywhere (within about a second).
        Store errors are waited out, never raised; runs until cancelled."""
