"""Copy a SQLite store into another backend (Redis, usually) through the target's interfaces.

The source is read with `state.sqlite.export` (one consistent snapshot of the file); everything
is written through the state interfaces, so the target's own rules hold (numbering, counters,
partitions, TTLs). What is copied and how:

- table versions in order, as they were (`TableVersions.import_version`): number, time, author,
  comment, source and diff; the newest is live on the target;
- profiles, browser ids, and carts with lines (a cart whose current version already had its
  abandoned event stays reported);
- exposures and conversions, so the experiment report answers the same;
- the admin UI's accounts (with their password hashes), saved test shoppers, drafts and audit
  entries (oldest first). Sessions are not: the UI's signing key is the target's own, so
  everyone signs in again;
- undelivered events under their own ids, in record order: pending deliveries are queued again
  for the same destinations (retry counters start afresh: each goes at once), and dead ones are
  kept dead (with their attempts and last error), so `events replay --dead` still decides.
  Delivered deliveries are not copied.

Kinds that are not idempotent (versions, exposures, the audit log, the outbox) make a second
copy refuse:
`occupied` names what a target already holds, and the caller stops unless forced. Forced, the
versions a target already numbers are skipped, profiles, browser ids, carts, accounts, saved
shoppers and drafts are overwritten, and exposures, audit entries and events are added again
(same event ids: receivers de-duplicate on them).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import TypeVar

from state import State
from state.events import Event
from state.profiles import Profile
from state.sqlite import export
from state.sqlite.export import Dead

T = TypeVar("T")
Progress = Callable[[str], None]

BATCH = 500  # items per write batch (events per append, exposures per add)
CONCURRENCY = 64  # independent writes in flight (profiles, browser ids, carts, conversions)


class MigrationError(Exception):
    """The copy cannot go on; the message says why and what to do."""


@dataclass(slots=True)
class Summary:
    copied: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)  # versions the target already had


async def occupied(target: State) -> list[str]:
    """What the target holds that a copy would duplicate; also what a live gateway writes
    (versions from its tables file, outbox destinations as soon as its dispatchers run)."""
    found = []
    latest = await target.versions.latest_number()
    if latest:
        found.append(f"{latest} table versions")
    stats = await target.outbox.stats()
    if stats:
        found.append(f"outbox destinations {', '.join(sorted(stats))}")
    if await target.exposures.report():
        found.append("experiment exposures")
    if await target.console.audit.recent(1):
        found.append("an audit log")
    return found


async def unhealthy(state: State) -> dict[str, str]:
    """Checks that are not "ok": a degraded target (Redis away, events spooled) takes no copy."""
    return {name: value for name, value in (await state.health()).items() if value != "ok"}


async def migrate(
    source: sqlite3.Connection, target: State, progress: Progress, *, dead_timeout: float
) -> Summary:
    """Copy every kind, reporting one line per kind as it finishes. `dead_timeout`: the most to
    wait for the target to lease the copied dead letters back (a killed gateway's partition
    leases must lapse first)."""
    summary = Summary()

    async def step(kind: str, copy: Awaitable[int]) -> None:
        summary.copied[kind] = await copy
        skipped = summary.skipped.get(kind)
        note = f" ({skipped} already there, skipped)" if skipped else ""
        progress(f"{kind}: {summary.copied[kind]} copied{note}")

    await step("versions", _versions(source, target, summary))
    await step("profiles", _each(export.profiles(source), _profile_writer(target)))
    await step(
        "browser ids",
        _each(export.browser_ids(source), lambda pair: target.browser_ids.put(*pair)),
    )
    await step("carts", _each(export.carts(source), lambda cart: _cart(target, cart)))
    await step("exposures", _exposures(source, target))
    await step(
        "conversions",
        _each(
            export.conversions(source),
            lambda c: target.exposures.convert(c.visitor, c.order_id, c.total, c.at),
        ),
    )
    console = target.console
    await step("admin accounts", _each(export.accounts(source), console.accounts.put))
    await step("saved shoppers", _each(export.saved_shoppers(source), console.shoppers.put))
    await step("drafts", _each(export.drafts(source), console.drafts.create))
    await step("audit entries", _in_order(export.audit(source), console.audit.add))
    await step("dead deliveries", _dead(source, target, dead_timeout))
    await step("pending deliveries", _pending(source, target))
    return summary


async def _versions(source: sqlite3.Connection, target: State, summary: Summary) -> int:
    copied = 0
    for version in export.versions(source):
        if await target.versions.import_version(version):
            copied += 1
        else:
            summary.skipped["versions"] = summary.skipped.get("versions", 0) + 1
    return copied


def _profile_writer(target: State) -> Callable[[Profile], Awaitable[object]]:
    """Store a profile as it is, whatever the target had."""

    def write(profile: Profile) -> Awaitable[object]:
        return target.profiles.update(profile.visitor_id, lambda _: profile)

    return write


async def _each(items: Iterable[T], write: Callable[[T], Awaitable[object]]) -> int:
    """Run `write` for every item, CONCURRENCY at a time (order does not matter here)."""
    count = 0
    for chunk in _chunks(items, CONCURRENCY):
        await asyncio.gather(*(write(item) for item in chunk))
        count += len(chunk)
    return count


async def _in_order(items: Iterable[T], write: Callable[[T], Awaitable[object]]) -> int:
    """One after another: where the order of writing is the order kept (the audit log)."""
    count = 0
    for item in items:
        await write(item)
        count += 1
    return count


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


async def _cart(target: State, cart: export.Cart) -> None:
    """Replay the lines into a fresh cart, at the time it was last changed. A fresh cart's
    version counts its changes, so the copy of a reported cart claims that version."""
    await target.carts.close(cart.visitor)
    for line in cart.lines:
        await target.carts.change(
            cart.visitor,
            line,
            removed=False,
            order_id=cart.order_id,
            anonymous=cart.anonymous,
            browser_id=cart.browser_id,
            now=cart.updated_at,
        )
    if cart.reported:
        await target.carts.reported(cart.visitor, len(cart.lines))


async def _exposures(source: sqlite3.Connection, target: State) -> int:
    count = 0
    for chunk in _chunks(export.exposures(source), BATCH):
        await target.exposures.add(chunk)
        count += len(chunk)
    return count


async def _pending(source: sqlite3.Connection, target: State) -> int:
    """Queue every pending delivery again, in record order. Consecutive events queued at the same
    time go in one append; an event queued for its destinations at different times (a replay)
    goes in one append per time."""
    batch = _Appender(target)
    for owed in export.undelivered(source):
        by_time: dict[float, list[str]] = {}
        for dest, queued_at in owed.pending.items():
            by_time.setdefault(queued_at, []).append(dest)
        for queued_at, dests in sorted(by_time.items()):
            await batch.add(owed.event, dests, queued_at)
    await batch.flush()
    return batch.deliveries


async def _dead(source: sqlite3.Connection, target: State, timeout: float) -> int:
    """Queue each dead delivery, lease it back from the target and dead-letter it there with its
    attempts and error: the one way in through the `Outbox` interface. Runs before the pending
    ones are queued, so nothing else is leased meanwhile (on an unoccupied target)."""
    batch = _Appender(target)
    wanted: dict[str, dict[str, Dead]] = {}
    for owed in export.undelivered(source):
        for dest, dead in owed.dead.items():
            wanted.setdefault(dest, {})[owed.event.id] = dead
            await batch.add(owed.event, [dest], dead.queued_at)
    await batch.flush()
    for dest, dead_letters in wanted.items():
        await _dead_letter(target, dest, dead_letters, timeout)
    return batch.deliveries


async def _dead_letter(target: State, dest: str, wanted: dict[str, Dead], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while wanted:
        leased = await target.outbox.lease(
            dest, time.time(), limit=BATCH, per_key=BATCH, max_keys=None, busy=()
        )
        found = False
        for deliveries in leased.groups.values():
            for delivery in deliveries:
                dead = wanted.pop(delivery.event.id, None)
                if dead is None:
                    continue  # not one of ours (a forced copy): its lease lapses, it goes later
                found = True
                # `retry` counts the attempt it is told about: the dead letter keeps the source's.
                as_leased = replace(delivery, attempts=max(dead.attempts - 1, 0))
                await target.outbox.retry(dest, as_leased, time.time(), dead.error, dead=True)
        if not found:
            if time.monotonic() > deadline:
                raise MigrationError(
                    f"{len(wanted)} dead deliveries for {dest} were queued on the target but"
                    " could not be leased back to dead-letter them (is a gateway consuming it?);"
                    " they are pending there now"
                )
            await asyncio.sleep(0.2)


class _Appender:
    """Appends events in record order, batching consecutive ones queued at the same time."""

    def __init__(self, target: State) -> None:
        self.target = target
        self.events: list[Event] = []
        self.routes: list[list[str]] = []
        self.queued_at = 0.0
        self.deliveries = 0

    async def add(self, event: Event, dests: list[str], queued_at: float) -> None:
        if self.events and (queued_at != self.queued_at or len(self.events) >= BATCH):
            await self.flush()
        self.events.append(event)
        self.routes.append(dests)
        self.queued_at = queued_at
        self.deliveries += len(dests)

    async def flush(self) -> None:
        """Ready at once (hold 0): no process is left to release a held event."""
        if self.events:
            await self.target.outbox.append(self.events, self.routes, self.queued_at, 0.0)
            self.events, self.routes = [], []
