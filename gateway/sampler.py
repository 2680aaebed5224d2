"""Keeps the gauges and mirrored counters of `gateway.metrics` current, in the background.

Every few seconds (`OCGW_METRICS_INTERVAL`) it reads the outbox's per-destination backlog, oldest
undelivered age and dead letters from the shared store (any replica reports the same numbers),
the store's health, each dispatcher's breaker, and the counts the proxy, tracker and decision
service keep in memory. A scrape also brings the in-memory counts up to date first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from decisions.service import DecisionService
from gateway import metrics
from gateway.proxy import Proxy
from state import State
from tracking.service import TrackingService

log = logging.getLogger(__name__)

_DECISION_OUTCOMES = ("calls", "personalized", "no_table", "no_match")
_CALLFLOWS = {"cdp_calls": "calls", "cdp_errors": "errors", "cdp_timeouts": "timeouts"}
_STORE_COUNTS = {"release_errors": "release", "settle_errors": "settle"}


class Sampler:
    def __init__(
        self,
        interval: float,
        *,
        proxy: Proxy,
        state: State,
        tracking: TrackingService,
        decisions: DecisionService,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.interval = interval
        self.proxy = proxy
        self.state = state
        self.tracking = tracking
        self.decisions = decisions
        self.clock = clock
        self._mirror = metrics.Mirror()
        self._stats_errors = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="metrics-sampler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(self.interval)

    async def sample(self) -> None:
        """One round: the store's numbers, then the in-memory ones. Never raises."""
        try:
            await self._store()
        except Exception as exc:  # the store is down: its gauges keep their last values
            self._stats_errors += 1
            log.debug("metrics: outbox stats unavailable: %s", type(exc).__name__)
        self.counts()

    async def _store(self) -> None:
        health = await self.state.health()
        degraded = any(v.startswith("degraded") for v in health.values())
        ok = all(v == "ok" or v.startswith("degraded") for v in health.values())
        metrics.STORE_UP.set(0.5 if ok and degraded else float(ok))
        outbox = self.state.outbox
        stats, oldest = await outbox.stats(), await outbox.oldest()
        now = self.clock()
        for destination, row in stats.items():
            metrics.OUTBOX_PENDING.labels(destination).set(row.get("pending", 0))
            metrics.OUTBOX_DEAD.labels(destination).set(row.get("dead", 0))
            queued = oldest.get(destination)
            metrics.OUTBOX_OLDEST.labels(destination).set(max(0.0, now - queued) if queued else 0)

    def counts(self) -> None:
        """Mirror the in-memory counts and set the breaker gauges (cheap: no I/O)."""
        mirror = self._mirror
        proxy = {k: v for k, v in self.proxy.counters.items() if not k.endswith("_failures")}
        mirror.update(metrics.PROXY_EVENTS, proxy)
        tracked = self.tracking.counts
        mirror.update(
            metrics.TRACKING_EVENTS,
            {k: tracked[k] for k in ("recorded", "skipped", "hydration_errors")},
        )
        stats = self.decisions.stats
        mirror.update(metrics.DECISION_CALLS, {k: stats.get(k, 0) for k in _DECISION_OUTCOMES})
        mirror.update(metrics.CALLFLOWS, _renamed(stats, _CALLFLOWS))
        store = _renamed(tracked, _STORE_COUNTS)
        store["lease"] = sum(d.scan_errors for d in self.tracking.dispatchers)
        store["sync"] = stats.get("sync_errors", 0)
        store["stats"] = self._stats_errors
        mirror.update(metrics.STORE_ERRORS, store)
        now = self.clock()
        for dispatcher in self.tracking.dispatchers:
            breaker = dispatcher.policy.breaker
            state = 2 if breaker.blocked_until(now) is not None else int(breaker.probing())
            metrics.BREAKER_STATE.labels(dispatcher.name).set(state)


def _renamed(counts: Mapping[str, int], names: Mapping[str, str]) -> dict[str, int]:
    return {label: counts.get(key, 0) for key, label in names.items()}
