"""The tracker the proxy calls: record durably on the request path, do the rest in the background.

`record` maps the call to events (pure), appends them to the outbox in a group commit and
returns: that is all the shopper waits for. A background task then hydrates the events with the
shopper's token (memory only), settles the browser id, updates the visitor's profile and cart, and
releases the events to the dispatchers. Events recorded but never hydrated (the process died) are
released on the next start with what was known.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
from cachetools import TTLCache

from gateway import operations as ops
from gateway.call import Call
from gateway.identity import Visitor
from gateway.settings import Settings
from tracking import abandon, browserids, outbox, profilestore
from state import events as ev
from tracking.browserids import BrowserIds
from tracking.destinations import cdp
from tracking.destinations.cdp import CdpConfig, CdpDestination
from tracking.destinations.discover import DiscoverDestination
from tracking.destinations.file import FileDestination
from tracking.destinations.send import SendDestination
from tracking.destinations.webhook import WebhookDestination
from tracking.dispatcher import Destination, Dispatcher, Policy
from state.events import Event
from tracking.hydrate import Upstream, hydrate
from tracking.mapping import TRACKED_KINDS, bearer_from_answer, events_for
from tracking.outbox import Outbox
from tracking.privacy import not_tracked
from tracking.profiles import Profile
from tracking.profilestore import SqliteProfileStore
from tracking.store import Store

log = logging.getLogger(__name__)
_KEPT_VIEWS = 50
_HYDRATED = frozenset(
    {ev.IDENTIFIED, ev.PRODUCT_VIEWED, ev.LINE_ADDED, ev.LINE_UPDATED, ev.ORDER_SUBMITTED}
)
SCHEMA = outbox.SCHEMA + browserids.SCHEMA + profilestore.SCHEMA + abandon.SCHEMA


class Identity(Protocol):
    async def visitor(self, token: str) -> Visitor | None: ...


class TrackingService:
    def __init__(
        self,
        settings: Settings,
        identity: Identity | None,
        upstream: Upstream,
        *,
        destinations: list[Destination] | None = None,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        policy: Callable[[], Policy] | None = None,
        sweep_every: float | None = None,
    ) -> None:
        self.settings = settings
        self.identity = identity
        self.upstream = upstream
        self.clock = clock
        self.counts: Counter[str] = Counter()
        self.store = Store(settings.store, SCHEMA)
        self.outbox = Outbox(self.store)
        self._own_http = http is None
        self.http = http or httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0))
        cdp_on = bool(settings.cdp_url and settings.cdp_client_key)
        mint = (
            partial(cdp.create_browser, self.http, _base(settings.cdp_url), settings.cdp_client_key)
            if cdp_on
            else browserids.local_uuid
        )
        self.browser_ids = BrowserIds(self.store, mint)
        self.profiles = SqliteProfileStore(self.store)
        self.destinations = destinations if destinations is not None else self._configured(settings)

        def default_policy() -> Policy:
            return Policy(max_attempts=settings.max_attempts, max_age=settings.max_event_age)

        make_policy = policy or default_policy
        self.dispatchers = [
            Dispatcher(self.outbox, d, make_policy(), clock=clock) for d in self.destinations
        ]
        self.sweep_every = sweep_every or min(60.0, settings.abandon_after / 4)
        # A visitor's later events wait for this one's hydration: keep that wait short.
        self._hydrate_timeout = min(10.0, settings.upstream_timeout)
        self._background: set[asyncio.Task[Any]] = set()
        self._categories: TTLCache[str, list[str]] = TTLCache(maxsize=20_000, ttl=600)
        self._settling: dict[str, asyncio.Future[None]] = {}  # last unsettled event per visitor
        self._sweeper: asyncio.Task[None] | None = None
        self._running = False

    def _configured(self, settings: Settings) -> list[Destination]:
        out: list[Destination] = []
        if settings.cdp_url and settings.cdp_client_key:
            pos = settings.cdp_pos or urlsplit(settings.upstream).hostname or "ocgateway"
            config = CdpConfig(
                settings.cdp_client_key, pos, settings.cdp_channel, settings.cdp_order_mode
            )
            out.append(
                CdpDestination(self.http, _base(settings.cdp_url), config, self.browser_ids.resolve)
            )
        if settings.send_url and settings.send_site_id:
            out.append(SendDestination(self.http, _base(settings.send_url), settings.send_site_id))
        if settings.discover_url:
            out.append(
                DiscoverDestination(
                    self.http, str(settings.discover_url), settings.discover_api_key
                )
            )
        if settings.webhook_url:
            out.append(
                WebhookDestination(self.http, str(settings.webhook_url), settings.webhook_secret)
            )
        if settings.events_file or not out:
            path = settings.events_file or settings.store.parent / "events.jsonl"
            out.append(FileDestination(path))
        return out

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self.store.open)
        self._running = True
        for dispatcher in self.dispatchers:
            dispatcher.start()
        for seq, event in await self.outbox.unready():
            self._spawn(self._finish(seq, event, None))
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="abandoned-carts")

    async def stop(self, timeout: float = 10.0) -> None:
        """Finish hydrations and in-flight deliveries (each up to `timeout`), then close."""
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
        await asyncio.gather(*(d.stop(timeout) for d in self.dispatchers))
        if self._own_http:
            await self.http.aclose()
        await asyncio.to_thread(self.store.close)

    # -- the proxy's hooks -----------------------------------------------------------------

    def wants(self, call: Call) -> bool:
        if not self.settings.tracking or call.operation.kind not in TRACKED_KINDS:
            return False
        if call.operation.kind == ops.PRODUCTS_LIST and "search=" not in call.query.lower():
            return False
        if not_tracked(
            call.headers,
            track_bots=self.settings.track_bots,
            honour_gpc=self.settings.honour_gpc,
        ):
            self.counts["skipped"] += 1
            return False
        return True

    async def record(self, call: Call, status: int, body: bytes) -> None:
        """Append the call's events durably; hydrate and release them in the background.

        Events that need no network (a view, a search, a removal of a known visitor whose browser
        id is in memory) are settled and released in the append's own transaction: no second
        write, no background task.
        """
        if not self._running:
            return
        try:
            events = events_for(call, status, body, client_key=self.settings.cdp_client_key)
            if not events:
                return
            kind = call.operation.kind
            token = bearer_from_answer(body) if kind in (ops.TOKEN, ops.REGISTER) else call.token
            now = self.clock()
            later = [e for e in events if not self._settles_now(e, token)]
            ready = [e for e in events if e not in later]
            seqs, profiles = await self.store.write(partial(self._append, ready, later, now))
        except Exception:
            self.counts["errors"] += 1
            log.exception("tracking: could not record %s", call.operation.kind)
            return
        self.counts["recorded"] += len(events)
        for profile in profiles:
            self.profiles.cached(profile)
        if ready:
            self._wake()
        for seq, event in zip(seqs, later):
            self._spawn(self._finish(seq, event, token))

    def _settles_now(self, event: Event, token: str | None) -> bool:
        if event.previous_visitor or (token and self._needs_network(event)):
            return False
        if event.visitor in self._settling:  # an earlier event of this visitor is settling
            return False
        event.browser_id = event.browser_id or self.browser_ids.cached(event.visitor)
        return bool(event.browser_id) and event.browser_id == self.browser_ids.cached(event.visitor)

    def _needs_network(self, event: Event) -> bool:
        """Whether hydration must ask OrderCloud; a product's categories are remembered a while."""
        if event.type not in _HYDRATED:
            return False
        if event.type == ev.PRODUCT_VIEWED:
            known = self._categories.get(str((event.data.get("product") or {}).get("ID")))
            if known is not None:
                event.data["categories"] = known
                return False
        return True

    def _append(
        self, ready: list[Event], later: list[Event], now: float, conn: sqlite3.Connection
    ) -> tuple[list[int], list[Profile]]:
        profiles = [p for p in (_settle(conn, e, now) for e in ready) if p is not None]
        outbox.append(conn, [(e, self._routes(e)) for e in ready], now, ready=True)
        return outbox.append(
            conn, [(e, self._routes(e)) for e in later], now, ready=False
        ), profiles

    async def emit(self, event: Event) -> None:
        """Record an event made elsewhere (decision exposures); same durability as `record`.
        With tracking switched off nothing leaves the gateway, exposures included."""
        if not self._running or not self.settings.tracking:
            return
        if self._settles_now(event, None):
            await self.store.write(partial(self._append, [event], [], self.clock()))
            self.counts["recorded"] += 1
            self._wake()
            return
        seqs = await self.outbox.append([(event, self._routes(event))], self.clock())
        self.counts["recorded"] += 1
        self._spawn(self._finish(seqs[0], event, None))

    async def sweep(self) -> int:
        """Emit cart-abandoned events for idle carts; returns how many."""
        now = self.clock()
        idle_since = now - self.settings.abandon_after

        def run(conn: sqlite3.Connection) -> int:
            found = abandon.abandoned(conn, idle_since, now)
            outbox.append(conn, [(e, self._routes(e)) for e in found], now, ready=True)
            return len(found)

        count = await self.store.write(run)
        if count:
            self._wake()
        return count

    # -- background ------------------------------------------------------------------------

    def _routes(self, event: Event) -> list[str]:
        return [d.name for d in self.destinations if event.type in d.accepts]

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _wake(self) -> None:
        for dispatcher in self.dispatchers:
            dispatcher.wake()

    async def _finish(self, seq: int, event: Event, token: str | None) -> None:
        """Hydrate, then settle in record order per visitor; see `_hydrate_and_settle`."""
        key = event.visitor
        if key is None:
            await self._hydrate_and_settle(seq, event, token, None)
            return
        earlier = self._settling.get(key)
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._settling[key] = turn
        try:
            await self._hydrate_and_settle(seq, event, token, earlier)
        finally:
            turn.set_result(None)
            if self._settling.get(key) is turn:
                del self._settling[key]

    async def _hydrate_and_settle(
        self, seq: int, event: Event, token: str | None, earlier: asyncio.Future[None] | None
    ) -> None:
        """Hydrate (concurrently), then settle the browser id and release the event only after
        the visitor's earlier events did, so a login's carry-over reaches the events after it.
        Each step fails open."""
        if token:
            try:
                await hydrate(event, token, self.upstream, self._hydrate_timeout)
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
        try:
            await self._settle_browser(event)
        except Exception:  # noqa: BLE001 - fail open: CDP mints at delivery
            log.warning("tracking: no browser id yet for %s (will retry at delivery)", event.type)
        now = self.clock()

        def release(conn: sqlite3.Connection) -> Profile | None:
            profile = _settle(conn, event, now)
            outbox.mark_ready(conn, seq, event)
            return profile

        profile = await self.store.write(release)
        self._wake()
        if profile is not None:
            self.profiles.cached(profile)

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
            supplied = await self.browser_ids.carry_over(event.previous_visitor, event.visitor)
        elif supplied and event.previous_visitor:
            await self.browser_ids.remember(event.previous_visitor, supplied)
        event.browser_id = await self.browser_ids.resolve(event.visitor, supplied)


def _settle(conn: sqlite3.Connection, event: Event, now: float) -> Profile | None:
    """What an event changes in the visitor's cart and profile; runs in the event's release."""
    if event.visitor and event.previous_visitor:
        abandon.moved(conn, event.previous_visitor, event.visitor)
    if event.visitor and event.type in (ev.LINE_ADDED, ev.LINE_UPDATED, ev.LINE_REMOVED):
        line = event.data.get("lineitem") or {}
        removed = event.type == ev.LINE_REMOVED
        before = abandon.line_changed(conn, event, line, removed, now)
        if removed and before:
            event.data["lineitem"] = {**before, **{k: v for k, v in line.items() if v}}
    if event.visitor and event.type in (ev.ORDER_SUBMITTED, ev.CART_CLEARED):
        abandon.closed(conn, event.visitor)
    try:
        return _remember(conn, event, now)
    except Exception:  # a profile problem must not hold the event back
        log.exception("tracking: profile update failed")
        return None


def _remember(conn: sqlite3.Connection, event: Event, now: float) -> Profile | None:
    """Update the visitor's profile in the event's release transaction (no lost updates)."""
    if not event.visitor or event.type in (ev.DECISION_EXPOSED, ev.CART_ABANDONED):
        return None
    profile = profilestore.load(conn, event.visitor)
    if profile is None:
        profile = Profile(visitor_id=event.visitor, first_seen=now)
        earlier = (
            profilestore.load(conn, event.previous_visitor) if event.previous_visitor else None
        )
        if earlier is not None:
            profile.viewed_products = earlier.viewed_products
            profile.viewed_categories = earlier.viewed_categories
            profile.cart_products = earlier.cart_products
            profile.cart_value = earlier.cart_value
            profile.first_seen = earlier.first_seen or now
    _apply(profile, event, now)
    profilestore.save(conn, profile)
    return profile


def _apply(profile: Profile, event: Event, now: float) -> None:
    """What an event teaches about its visitor."""
    data = event.data
    profile.last_seen = now
    profile.anonymous = event.anonymous
    profile.browser_id = event.browser_id or profile.browser_id
    profile.language = event.context.get("language") or profile.language
    profile.currency = event.context.get("currency") or profile.currency
    user = data.get("user") or {}
    buyer = (user.get("Buyer") or {}).get("ID") if isinstance(user, dict) else None
    profile.buyer_id = buyer or profile.buyer_id
    if event.type == ev.IDENTIFIED and data.get("history"):
        # OrderCloud's own history counts; orders the gateway saw are part of it.
        profile.orders = max(profile.orders, int(data["history"].get("orders") or 0))
        profile.spent = max(profile.spent, float(data["history"].get("spent") or 0))
    elif event.type == ev.PRODUCT_VIEWED:
        pid = (data.get("product") or {}).get("ID")
        if pid:
            views = [p for p in profile.viewed_products if p != pid] + [str(pid)]
            profile.viewed_products = views[-_KEPT_VIEWS:]
        for category in data.get("categories") or []:
            kept = [c for c in profile.viewed_categories if c != category] + [str(category)]
            profile.viewed_categories = kept[-_KEPT_VIEWS:]
    elif event.type in (ev.LINE_ADDED, ev.LINE_UPDATED):
        pid = (data.get("lineitem") or {}).get("ProductID")
        if pid and pid not in profile.cart_products:
            profile.cart_products.append(str(pid))
        subtotal = (data.get("order") or {}).get("Subtotal")
        if subtotal is not None:
            profile.cart_value = float(subtotal)
    elif event.type == ev.LINE_REMOVED:
        pid = (data.get("lineitem") or {}).get("ProductID")
        profile.cart_products = [p for p in profile.cart_products if p != pid]
    elif event.type in (ev.CART_CLEARED, ev.ORDER_SUBMITTED):
        if event.type == ev.ORDER_SUBMITTED:
            profile.orders += 1
            profile.spent += float((data.get("order") or {}).get("Total") or 0)
        profile.cart_products, profile.cart_value = [], 0.0


def _base(url: object) -> str:
    return str(url).rstrip("/")


def build_tracking(
    settings: Settings, identity: Identity | None, upstream: Upstream
) -> TrackingService:
    """The tracker for the app: call `await start()` in lifespan startup, `await stop()` at shutdown."""
    return TrackingService(settings, identity, upstream)
