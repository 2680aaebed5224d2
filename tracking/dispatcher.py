"""Delivers the outbox to one destination, in the background, durably and in order per visitor.

One dispatcher per destination, so a dead webhook never stalls CDP. Each round leases a bounded
page of due deliveries from the outbox (any replica may deliver any event; a lease keeps two from
sending the same one), grouped by visitor, and runs one chain per visitor (concurrent
across visitors, sequential within one; batch destinations get one chain). A failure stops its
chain and schedules a retry with capped exponential backoff and full jitter (or the server's
Retry-After); permanent errors, too many attempts or too old an event dead-letter the delivery.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from state.events import Event
from state.outbox import Delivery, Outbox
from tracking.breaker import Breaker
from tracking.destinations.outcome import DeliveryError

log = logging.getLogger(__name__)


class Destination(Protocol):
    name: str
    accepts: frozenset[str]
    max_batch: int

    async def send(self, events: Sequence[Event]) -> None: ...


@dataclass(slots=True)
class Policy:
    max_attempts: int = 12
    max_age: float = 72 * 3600
    base_delay: float = 0.5
    max_delay: float = 300.0
    concurrency: int = 8  # visitors in flight per destination (httpx slows down past ~8)
    per_key: int = 20  # deliveries of one visitor taken per round (one-at-a-time destinations)
    poll: float = 1.0  # longest idle wait; new events wake the dispatcher sooner
    linger: float = 0.05  # batch destinations: gather this long after a part-full batch
    breaker: Breaker = field(default_factory=Breaker)
    # told (destination, "delivered" | "retry" | "dead", how many) after each attempt: metrics
    observe: Callable[[str, str, int], None] | None = None


class Dispatcher:
    def __init__(
        self,
        outbox: Outbox,
        destination: Destination,
        policy: Policy,
        *,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.outbox = outbox
        self.destination = destination
        self.policy = policy
        self.clock = clock
        self.rng = rng
        self.delivered = 0
        self.failed = 0
        self.scan_errors = 0
        self._changed = asyncio.Event()
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.destination.name

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"dispatch-{self.name}")

    def wake(self) -> None:
        self._changed.set()

    async def stop(self, timeout: float) -> None:
        """Stop taking work, let in-flight deliveries finish (up to `timeout`), cancel the rest."""
        self._stopping = True
        self._changed.set()
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=timeout)
            self._task.cancel()
        pending = set(self._inflight.values())
        if pending:
            _, late = await asyncio.wait(pending, timeout=timeout)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    async def _run(self) -> None:
        breaker = self.policy.breaker
        while not self._stopping:
            self._changed.clear()
            now = self.clock()
            until = breaker.blocked_until(now)
            if until is not None:
                await self._idle(until - now)
                continue
            batching = self.destination.max_batch > 1
            slots = 1 if batching else self.policy.concurrency
            room = slots - len(self._inflight)
            if room <= 0 or (self._inflight and room < slots // 2):
                await self._idle(self.policy.poll)  # rescan once half the slots are free
                continue
            probing = breaker.probing()
            if probing and self._inflight:
                await self._idle(self.policy.poll)
                continue
            # A batch goes as one request in record order, so one busy visitor may fill it;
            # chains of single sends take `per_key` per visitor, so the others get their turn.
            per_key = (
                1 if probing else (self.destination.max_batch if batching else self.policy.per_key)
            )
            limit = 1 if probing else (self.destination.max_batch if batching else room * per_key)
            try:
                leased = await self.outbox.lease(
                    self.name,
                    now,
                    limit=limit,
                    per_key=per_key,
                    max_keys=None if batching else room,
                    busy=tuple(self._inflight),
                )
            except Exception as exc:  # the store is down: try again shortly, quietly
                self._scan_failed(exc)
                await self._idle(self.policy.poll)
                continue
            picked = leased.groups
            if not picked:
                wait = self.policy.poll if leased.next_due is None else leased.next_due - now
                await self._idle(min(self.policy.poll, wait))
                continue
            if batching:
                dues = [d for group in picked.values() for d in group]
                dues.sort(key=lambda d: d.queued_at)
                self._launch("*batch*", dues)
                if len(dues) < self.destination.max_batch:
                    await asyncio.sleep(self.policy.linger)  # let the next batch fill up
            else:
                for key, dues in picked.items():
                    self._launch(key, dues)
            await self._idle(self.policy.poll)

    def _scan_failed(self, exc: Exception) -> None:
        self.scan_errors += 1
        if self.scan_errors == 1 or self.scan_errors % 60 == 0:
            log.warning("outbox unavailable for %s: %s", self.name, type(exc).__name__)

    def _launch(self, key: str, dues: list[Delivery]) -> None:
        task = asyncio.create_task(self._chain(dues))
        self._inflight[key] = task

        def done(_: asyncio.Task[None]) -> None:
            self._inflight.pop(key, None)
            self._changed.set()

        task.add_done_callback(done)

    async def _idle(self, seconds: float) -> None:
        if self._changed.is_set() or seconds <= 0:
            await asyncio.sleep(0)
            return
        try:
            await asyncio.wait_for(self._changed.wait(), timeout=seconds)
        except TimeoutError:
            pass

    async def _chain(self, dues: list[Delivery]) -> None:
        try:
            if self.destination.max_batch > 1:
                await self._send(dues)
                return
            for due in dues:
                if not await self._send([due]):
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("dispatch chain failed for %s", self.name)

    async def _send(self, dues: list[Delivery]) -> bool:
        try:
            await self.destination.send([d.event for d in dues])
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure is a failed delivery
            await self._failed(dues, exc)
            return False
        await self.outbox.ack(self.name, dues)
        self.delivered += len(dues)
        self._observe("delivered", len(dues))
        self.policy.breaker.success()
        return True

    def _observe(self, outcome: str, count: int) -> None:
        if self.policy.observe is not None:
            self.policy.observe(self.name, outcome, count)

    async def _failed(self, dues: list[Delivery], exc: Exception) -> None:
        now = self.clock()
        policy = self.policy
        permanent = isinstance(exc, DeliveryError) and exc.permanent
        retry_after = exc.retry_after if isinstance(exc, DeliveryError) else None
        message = f"{type(exc).__name__}: {exc}"
        self.failed += len(dues)
        for due in dues:
            attempts = due.attempts + 1
            dead = (
                permanent
                or attempts >= policy.max_attempts
                or now - due.queued_at >= policy.max_age
            )
            delay = self.rng() * min(policy.max_delay, policy.base_delay * 2 ** (attempts - 1))
            if retry_after is not None:
                delay = max(delay, retry_after)
            await self.outbox.retry(self.name, due, now + delay, message, dead)
            self._observe("dead" if dead else "retry", 1)
            if dead:
                log.warning("dead-lettered event %s for %s: %s", due.event.id, self.name, message)
        if permanent:
            self.policy.breaker.success()  # the destination answered; this event is the problem
            return
        self.policy.breaker.failure(now)
        if retry_after is not None:
            self.policy.breaker.pause(now, retry_after)
        log.info("delivery to %s failed (%s); will retry", self.name, message)
