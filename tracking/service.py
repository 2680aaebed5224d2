"""The tracker the proxy calls: record durably on the request path, do the rest in the background.

`record` maps the call to events (pure) and appends them to the outbox: that is all the shopper
waits for. Events that need nothing more (a view whose product categories are known, a search, an
exposure, with the visitor's browser id in memory) are appended ready. The others are appended
held: a background task hydrates them with the shopper's token (memory only), settles the browser
id and the visitor's cart, and releases them, in record order per visitor. Every event then
updates the visitor's profile. An event held by a process that died goes as it was recorded once
its hold passes, from whichever process delivers it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cachetools import TTLCache

from gateway import operations as ops
from gateway.call import Call
from gateway.identity import Visitor
from gateway.pending import PendingProfiles
from state import events as ev
from state.carts import Carts, IdleCart
from state.events import Event
from state.exposures import Exposure, Exposures
from state.outbox import Outbox
from state.profiles import Profiles
from tracking.browsers import Browsers
from tracking.dispatcher import Destination, Dispatcher, Policy
from tracking.hydrate import Upstream, hydrate
from tracking.learning import ProfileWriter
from tracking.mapping import TRACKED_KINDS, bearer_from_answer, events_for, exposure_events
from tracking.privacy import not_tracked
from tracking.settle import profile_change, settle_cart, settle_conversion

log = logging.getLogger(__name__)
_HYDRATED = frozenset(
    {
        ev.IDENTIFIED,
        ev.PRODUCT_VIEWED,
        ev.LINE_ADDED,
        ev.LINE_UPDATED,
        ev.LINE_REMOVED,
        ev.ORDER_SUBMITTED,
    }
)
_READY_TYPES = frozenset({ev.PRODUCT_VIEWED, ev.PRODUCTS_SEARCHED, ev.DECISION_EXPOSED})
_ABANDONED = uuid.UUID("0b6f6d2a-3c59-4f7e-8f0e-5d1c2b7a9e41")


@dataclass(frozen=True, slots=True)
class TrackingConfig:
    """What the tracker needs to know, built once from the settings by the composition root."""

    enabled: bool = True  # False: nothing leaves the gateway; exposures are still stored
    client_key: str | None = None  # CDP client key: names the storefront's `bid_` cookie
    track_bots: bool = False
    honour_gpc: bool = True
    abandon_after: float = 2 * 3600
    hydrate_timeout: float = 10.0  # a visitor's later events wait at most this for hydration
    hold_grace: float = 20.0  # an event held longer than hydration + this goes as recorded


def tracked(call: Call, config: TrackingConfig) -> bool | None:
    """Whether a call's events are recorded: True, False (nothing to track), or None (it would
    be, but the shopper opted out, prefetched, or is a bot)."""
    if not config.enabled or call.operation.kind not in TRACKED_KINDS:
        return False
    if call.operation.kind == ops.PRODUCTS_LIST and "search=" not in call.query.lower():
        return False
    if not_tracked(call.headers, track_bots=config.track_bots, honour_gpc=config.honour_gpc):
        return None
    return True


@dataclass(frozen=True, slots=True)
class Routing:
    """Where a storefront's events go: each API client's destinations (None: every client not
    named) and the event types it wants (None: all). Events of one client only ever reach its
    own destinations, named uniquely per client in the outbox."""

    clients: Mapping[str | None, Sequence[Destination]]
    wanted: Mapping[str | None, frozenset[str] | None]

    def names(self, event: Event) -> list[str]:
        """The destinations of the event's client (or of the default entry) that take it."""
        key = event.client if event.client in self.clients else None
        wanted = self.wanted.get(key)
        return [
            d.name
            for d in self.clients.get(key, ())
            if event.type in d.accepts and (wanted is None or event.type in wanted)
        ]


class Identity(Protocol):
    async def visitor(self, token: str) -> Visitor | None: ...


class TrackingService:
    def __init__(
        self,
        config: TrackingConfig,
        *,
        outbox: Outbox,
        profiles: Profiles,
        carts: Carts,
        exposures: Exposures,
        browsers: Browsers,
        destinations: Sequence[Destination],
        upstream: Upstream,
        routing: Routing | None = None,
        identity: Identity | None = None,
        pending: PendingProfiles | None = None,
        policy: Callable[[], Policy] = Policy,
        clock: Callable[[], float] = time.time,
        sweep_every: float | None = None,
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.profiles = profiles
        self.learning = ProfileWriter(profiles)
        self.carts = carts
        self.exposures = exposures
        self.browsers = browsers
        self.shared = list(destinations) if config.enabled else []  # every event, every client
        self.routing = routing or Routing({}, {})
        self.policy = policy
        self.upstream = upstream
        self.identity = identity
        self.pending = pending or PendingProfiles()
        self.clock = clock
        self.counts: Counter[str] = Counter()
        self._dispatchers = {
            d.name: Dispatcher(outbox, d, policy(), clock=clock) for d in self.destinations
        }
        self.sweep_every = sweep_every or min(60.0, config.abandon_after / 4)
        self._background: set[asyncio.Task[Any]] = set()
        self._categories: TTLCache[str, list[str]] = TTLCache(maxsize=20_000, ttl=600)
        self._settling: dict[str, asyncio.Future[None]] = {}  # last unsettled event per key
        self._rebinding: Counter[str] = Counter()  # held events per key that may set browser ids
        self._sweeper: asyncio.Task[None] | None = None
        self._running = False

    @property
    def destinations(self) -> list[Destination]:
        """Every destination events may go to now: the shared ones and every client's."""
        if not self.config.enabled:
            return []
        per_client = [d for found in self.routing.clients.values() for d in found]
        return self.shared + per_client

    @property
    def dispatchers(self) -> list[Dispatcher]:
        return list(self._dispatchers.values())

    async def use(self, routing: Routing, timeout: float = 10.0) -> None:
        """Route by `routing` from now on (a destinations file reload): a destination that is new
        or changed gets a dispatcher, one that went away has its dispatcher stopped. Its undelivered
        events stay in the outbox under its name, and go if it comes back."""
        self.routing = routing
        wanted = {d.name: d for d in self.destinations}
        for name, dispatcher in list(self._dispatchers.items()):
            if wanted.get(name) is not dispatcher.destination:
                del self._dispatchers[name]
                await dispatcher.stop(timeout)
        for name, destination in wanted.items():
            if name not in self._dispatchers:
                dispatcher = Dispatcher(self.outbox, destination, self.policy(), clock=self.clock)
                self._dispatchers[name] = dispatcher
                if self._running:
                    dispatcher.start()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._running = True
        for dispatcher in self.dispatchers:
            dispatcher.start()
        if self.destinations:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="abandoned-carts")

    async def stop(self, timeout: float = 10.0) -> None:
        """Finish settling and in-flight deliveries (each up to `timeout`)."""
        if not self._running:
            return
        self._running = False
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        if self._background:
            _, late = await asyncio.wait(set(self._background), timeout=timeout)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self.learning.close()
        await asyncio.gather(*(d.stop(timeout) for d in self.dispatchers))

    # -- the proxy's hooks -----------------------------------------------------------------

    def wants(self, call: Call) -> bool:
        wanted = tracked(call, self.config)
        if wanted is None:
            self.counts["skipped"] += 1
        return bool(wanted)

    async def record(
        self, call: Call, status: int, body: bytes | None, exposures: Sequence[Exposure] = ()
    ) -> None:
        """Append the call's events (and its decision's exposures) durably; settle in the
        background. `body` is None for a call the tracker did not want (exposures only). Raises
        if the stores cannot take them: the proxy counts that once."""
        if not self._running:
            return
        events = (
            []
            if body is None
            else events_for(call, status, body, client_key=self.config.client_key)
        )
        exposed = exposure_events(call, exposures) if self.config.enabled else []
        if not events and not exposures:
            return
        kind = call.operation.kind
        token = bearer_from_answer(body) if kind in (ops.TOKEN, ops.REGISTER) else call.token
        now = self.clock()
        ready: list[Event] = []
        held: list[Event] = []
        for event in events + exposed:
            (ready if self._ready(event, token) else held).append(event)
        # Counted before the first await: a call of the same visitor recorded meanwhile must
        # not go ready with a browser id one of these may still change.
        rebinds = [self._may_rebind(e) for e in held]
        rebinding = [e.order_key for e, r in zip(held, rebinds, strict=True) if r]
        self._rebinding.update(rebinding)
        hold_until = now + self.config.hydrate_timeout + self.config.hold_grace
        # Exposures for the experiment report: durable like the events (Redis spools both).
        writes = [self.exposures.add(list(exposures))] if exposures else []
        if ready:
            writes.append(self.outbox.append(ready, [self._routes(e) for e in ready], now, now))
        if held:
            routes = [self._routes(e) for e in held]
            writes.append(self.outbox.append(held, routes, now, hold_until))
        try:
            await (writes[0] if len(writes) == 1 else asyncio.gather(*writes))
        except BaseException:
            for key in rebinding:
                self._rebound(key)
            raise
        self.counts["recorded"] += len(ready) + len(held)
        if ready:
            self._wake()
        for event in ready:
            self._spawn(self._settle(event, None, released=True))
        for event, rebind in zip(held, rebinds, strict=True):
            if event.type == ev.IDENTIFIED:  # decisions wait for this profile (see _settle)
                self.pending.begin(event.order_key)
            self._spawn(self._settle(event, token, released=False, rebinds=rebind))

    def _rebound(self, key: str) -> None:
        self._rebinding[key] -= 1
        if not self._rebinding[key]:
            del self._rebinding[key]

    def _may_rebind(self, event: Event) -> bool:
        """Whether settling this held event may change its visitor's browser id: it stitches in
        an earlier visitor, its visitor is not known yet, none is known for the visitor here, or
        it brings another. Views held only for hydration do not, so they hold nothing back."""
        cached = self.browsers.cached(event.visitor)
        return bool(
            event.previous_visitor
            or cached is None
            or (event.browser_id and event.browser_id != cached)
        )

    def _ready(self, event: Event, token: str | None) -> bool:
        """Whether the event is final as recorded: nothing to hydrate, and its browser id known."""
        if event.type not in _READY_TYPES or event.previous_visitor:
            return False
        if token and event.type == ev.PRODUCT_VIEWED:
            known = self._categories.get(str((event.data.get("product") or {}).get("ID")))
            if known is None:
                return False
            event.data["categories"] = known  # held or not, no look-up needed (see _hydrate)
        if self._rebinding[event.order_key]:  # its browser id may be about to change
            return False
        cached = self.browsers.cached(event.visitor)
        event.browser_id = event.browser_id or cached
        return bool(event.browser_id) and event.browser_id == cached

    async def sweep(self) -> int:
        """Emit cart-abandoned events for idle carts; returns how many this process claimed."""
        now = self.clock()
        found = 0
        for cart in await self.carts.idle(now - self.config.abandon_after):
            if not await self.carts.reported(cart.visitor, cart.version):
                continue  # another process claimed it
            event = _abandoned(cart, now)
            await self.outbox.append([event], [self._routes(event)], now, now)
            found += 1
        if found:
            self._wake()
        return found

    # -- background ------------------------------------------------------------------------

    def _routes(self, event: Event) -> list[str]:
        if not self.config.enabled:
            return []
        return self.routing.names(event) + [d.name for d in self.shared if event.type in d.accepts]

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _wake(self) -> None:
        for dispatcher in self.dispatchers:
            dispatcher.wake()

    async def _settle(
        self, event: Event, token: str | None, released: bool, rebinds: bool = False
    ) -> None:
        """Settle in record order per visitor, hydrating concurrently; see `_hydrate_and_settle`."""
        key = event.order_key
        earlier = self._settling.get(key)
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._settling[key] = turn
        try:
            await self._hydrate_and_settle(event, token, earlier, released)
        finally:
            turn.set_result(None)
            if self._settling.get(key) is turn:
                del self._settling[key]
            if rebinds:
                self._rebound(key)
            if event.type == ev.IDENTIFIED and not released:
                self.pending.end(key)

    async def _hydrate_and_settle(
        self,
        event: Event,
        token: str | None,
        earlier: asyncio.Future[None] | None,
        released: bool,
    ) -> None:
        """Hydrate (concurrently), then settle after the visitor's earlier events did, so a
        login's carry-over reaches the events after it. Each step fails open."""
        if token and not released:
            try:
                if _needs_hydration(event):
                    await hydrate(event, token, self.upstream, self.config.hydrate_timeout)
                if event.type == ev.PRODUCT_VIEWED and "categories" in event.data:
                    product = str((event.data.get("product") or {}).get("ID"))
                    self._categories[product] = event.data["categories"]
                if event.visitor is None and self.identity is not None:
                    visitor = await self.identity.visitor(token)
                    if visitor is not None:
                        event.visitor, event.anonymous = visitor.id, visitor.anonymous
            except Exception:
                self.counts["hydration_errors"] += 1
                log.exception("tracking: hydration failed for %s", event.type)
        del token
        if earlier is not None:
            await asyncio.shield(earlier)
        now = self.clock()
        if not released:
            try:
                await self._settle_browser(event)
            except Exception:  # noqa: BLE001 - fail open: CDP mints at delivery
                log.warning("tracking: no browser id yet for %s (delivery mints one)", event.type)
            try:
                await settle_cart(event, now, self.carts)
            except Exception:
                self.counts["settle_errors"] += 1
                log.exception("tracking: cart update failed for %s", event.type)
            try:
                await self.outbox.release([event])
            except Exception:  # it goes as recorded once its hold passes
                self.counts["release_errors"] += 1
                log.exception("tracking: could not release %s", event.type)
            self._wake()
        try:
            earlier = None
            if event.previous_visitor:
                await self.learning.flush(event.previous_visitor)
                earlier = await self.profiles.get(event.previous_visitor)
            change = profile_change(event, now, earlier)
            if change is not None and event.visitor:
                self.learning.add(event.visitor, change)
                if event.type == ev.IDENTIFIED:  # a list call may be waiting for this profile
                    await self.learning.flush(event.visitor)
            await settle_conversion(event, self.exposures)
        except Exception:
            self.counts["settle_errors"] += 1
            log.exception("tracking: profile update failed for %s", event.type)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_every)
            try:
                await self.sweep()
            except Exception:
                log.exception("tracking: abandoned-cart sweep failed")

    async def _settle_browser(self, event: Event) -> None:
        supplied = event.browser_id
        if not supplied and event.visitor and event.previous_visitor:
            supplied = await self.browsers.carry_over(event.previous_visitor, event.visitor)
        elif supplied and event.previous_visitor:
            await self.browsers.remember(event.previous_visitor, supplied)
        event.browser_id = await self.browsers.resolve(event.visitor, supplied)


def _needs_hydration(event: Event) -> bool:
    """Whether hydration adds anything. A view held only behind its visitor's earlier held event
    already has its categories: looking them up again would make each such view hold the next
    one (a shopper browsing faster than hydration would be hydrated on every view)."""
    if event.type == ev.PRODUCT_VIEWED:
        return "categories" not in event.data
    return event.type in _HYDRATED


def _abandoned(cart: IdleCart, now: float) -> Event:
    """One event per idle cart version, with an id derived from both: a repeat is recognisable."""
    value = sum(float(line.get("LineTotal") or 0) for line in cart.lines)
    return Event(
        type=ev.CART_ABANDONED,
        visitor=cart.visitor,
        anonymous=cart.anonymous,
        occurred_at=now,
        id=uuid.uuid5(_ABANDONED, f"{cart.visitor}:{cart.version}").hex,
        browser_id=cart.browser_id,
        key=cart.visitor,
        data={
            "order_id": cart.order_id,
            "lineitems": cart.lines,
            "value": value,
            "items": len(cart.lines),
            "idle_since": cart.updated_at,
        },
    )
