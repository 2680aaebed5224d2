"""The durable outbox: events recorded before the shopper's answer completes, delivered later.

Every replica appends; a dispatcher per destination leases due deliveries, sends them and acks
or schedules a retry. A lease that is neither acked nor retried within the backend's lease time
(the process died) is taken over by any other process: at-least-once, under the event's own id.

Order: each event has an ordering key (`Event.order_key`: the visitor, known when it is
recorded). `lease` hands out a key's deliveries in record order and never a key's later delivery
while an earlier one is held, backing off or leased elsewhere.

Held events: tracking records an event at once and hydrates it afterwards. It appends with
`hold_until`; `release` stores the hydrated event and lets it go. An event never released (its
process died) goes as recorded once `hold_until` passes.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from state.events import Event


@dataclass(slots=True)
class Delivery:
    """One event leased to one destination's dispatcher."""

    ref: str  # the backend's handle for ack and retry
    event: Event
    attempts: int
    queued_at: float


@dataclass(slots=True)
class Leased:
    groups: dict[str, list[Delivery]]  # ordering key -> deliveries in record order
    next_due: float | None  # when the earliest held-back delivery may go, if any


class Outbox(Protocol):
    async def append(
        self,
        events: Sequence[Event],
        routes: Sequence[Sequence[str]],
        now: float,
        hold_until: float,
    ) -> None:
        """Record events durably, each for its destinations; held until `hold_until` unless
        released first (`hold_until <= now`: ready at once)."""

    async def release(self, events: Sequence[Event]) -> None:
        """Store these events as hydrated (same ids) and let them go."""

    async def lease(
        self,
        destination: str,
        now: float,
        *,
        limit: int,
        per_key: int,
        max_keys: int | None,
        busy: Collection[str],
    ) -> Leased:
        """Deliveries this process may attempt now, leased to it. `busy` keys are in flight here:
        none of theirs are handed out. A delivery this process leased but neither acked nor
        retried (a chain that stopped at a failure) is its own to lease again at once; another
        process gets it only once the lease time has passed (this one died)."""

    async def ack(self, destination: str, deliveries: Sequence[Delivery]) -> None: ...

    async def retry(
        self, destination: str, delivery: Delivery, next_at: float, error: str, dead: bool
    ) -> None:
        """Try again at `next_at`, or dead-letter it (`dead`)."""

    async def replay_dead(self, destination: str | None = None) -> int:
        """Put dead deliveries back in the queue, same event ids; returns how many."""

    async def stats(self) -> dict[str, dict[str, int]]:
        """Per destination: `pending`, `delivered` (where the backend keeps count) and `dead`."""

    async def oldest(self) -> dict[str, float]:
        """Per destination with undelivered (pending, not dead) events: when the oldest of them
        was queued, in epoch seconds. For the backlog-age metric; it may be a few seconds off."""

    async def recent(self, n: int, after: str | None = None) -> list[tuple[str, Event]]:
        """The last `n` events (or those after a cursor), oldest first, with their cursors."""
