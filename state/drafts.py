"""Drafts of the decision tables: edits that have not reached shoppers yet.

A draft moves draft → pending (waiting for a second publisher) → published, or to discarded.
Only a draft in state `draft` can be edited, so what a publisher approved is what goes live.
Every change is a compare-and-set on the state, so two marketers on two replicas cannot both
publish, or edit what is being approved.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import orjson

DRAFT = "draft"
PENDING = "pending"  # waiting for a second publisher's approval; not editable
PUBLISHED = "published"
DISCARDED = "discarded"
STATES = (DRAFT, PENDING, PUBLISHED, DISCARDED)


@dataclass(frozen=True, slots=True)
class Draft:
    id: str
    title: str
    source: str
    base_version: int | None  # the live version it started from
    author: str
    created_at: float
    updated_at: float
    updated_by: str
    state: str = DRAFT
    editors: tuple[str, ...] = field(default_factory=tuple)  # everyone who changed it
    comment: str = ""  # the publish comment, given when publishing or asking for approval
    requested_by: str | None = None
    approved_by: str | None = None
    published_version: int | None = None

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> Draft:
        values: dict[str, Any] = orjson.loads(raw)
        values["editors"] = tuple(values.get("editors") or ())
        return cls(**values)


class Drafts(Protocol):
    async def create(self, draft: Draft) -> None: ...

    async def get(self, draft_id: str) -> Draft | None: ...

    async def list(self) -> list[Draft]:
        """Every draft, most recently changed first."""

    async def change(self, draft_id: str, expect: Collection[str], **changes: Any) -> Draft | None:
        """Atomically replace `changes` on the draft if its state is one of `expect`; the changed
        draft, or None when there is no such draft or it is in another state."""
