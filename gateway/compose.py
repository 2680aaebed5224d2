"""The composition root: the one place that turns `Settings` into the narrow configs and wired
services that the app (`gateway.app`) and the command line (`gateway.cli`) run.

Each service gets only what it needs: a small frozen config and the state interfaces it uses.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

import httpx

from console.config import ConsoleConfig, PreviewConfig
from decisions.loader import signature, watch
from decisions.personalize import Personalize, PersonalizeConfig
from decisions.service import DecisionsConfig, DecisionService
from gateway.pending import PendingProfiles
from gateway.settings import Settings
from gateway.storefronts import (
    CdpEntry,
    DiscoverEntry,
    InvalidDestinations,
    SendEntry,
    Storefront,
    WebhookEntry,
    destination_name,
    read_destinations,
)
from state import State, StateConfig, open_state
from tracking.browsers import Browsers, local_uuid
from tracking.destinations import cdp
from tracking.destinations.cdp import CdpConfig, CdpDestination
from tracking.destinations.discover import DiscoverDestination
from tracking.destinations.file import FileDestination
from tracking.destinations.send import SendDestination
from tracking.destinations.webhook import WebhookDestination
from tracking.dispatcher import Destination, Policy
from tracking.hydrate import Upstream
from tracking.productfields import DEFAULT_FIELDS
from tracking.service import Identity, Routing, TrackingConfig, TrackingService

log = logging.getLogger(__name__)


def state_config(settings: Settings) -> StateConfig:
    return StateConfig(
        location=settings.store,
        prefix=settings.redis_prefix,
        spool=settings.spool,
        lease_seconds=settings.lease_seconds,
        partitions=settings.partitions,
        timeout=settings.redis_timeout,
    )


async def open_store(settings: Settings) -> State:
    return await open_state(state_config(settings))


def tracking_config(settings: Settings) -> TrackingConfig:
    return TrackingConfig(
        enabled=settings.tracking,
        client_key=settings.cdp_client_key,
        track_bots=settings.track_bots,
        honour_gpc=settings.honour_gpc,
        abandon_after=settings.abandon_after,
        hydrate_timeout=min(10.0, settings.upstream_timeout),
        hold_grace=settings.hold_grace,
    )


def decisions_config(settings: Settings) -> DecisionsConfig:
    return DecisionsConfig(
        tables=settings.decisions,
        client_key=settings.cdp_client_key,
        budget=settings.personalize_timeout_ms / 1000,
        country_headers=settings.country_headers,
    )


def _base(url: object) -> str:
    return str(url).rstrip("/")


def browsers(settings: Settings, state: State, http: httpx.AsyncClient) -> Browsers:
    """Browser ids minted through CDP's browser-create call when CDP is configured."""
    if settings.cdp_url and settings.cdp_client_key:
        mint = partial(cdp.create_browser, http, _base(settings.cdp_url), settings.cdp_client_key)
        return Browsers(state.browser_ids, mint)
    return Browsers(state.browser_ids, local_uuid)


def default_storefront(settings: Settings) -> Storefront:
    """The single-storefront shorthand: the `OCGW_*` variables as the `default` entry."""
    cdp_entry = None
    if settings.cdp_url and (settings.cdp_client_key or settings.personalize_flow):
        cdp_entry = CdpEntry(
            url=settings.cdp_url,
            client_key=settings.cdp_client_key or "",
            pos=settings.cdp_pos,
            channel=settings.cdp_channel,
            order_mode=settings.cdp_order_mode,
            personalize_flow=settings.personalize_flow,
        )
    return Storefront(
        cdp=cdp_entry,
        send=SendEntry(url=settings.send_url, site_id=settings.send_site_id)
        if settings.send_url and settings.send_site_id
        else None,
        discover=DiscoverEntry(url=settings.discover_url, api_key=settings.discover_api_key)
        if settings.discover_url
        else None,
        webhook=WebhookEntry(url=settings.webhook_url, secret=settings.webhook_secret)
        if settings.webhook_url
        else None,
    )


def storefronts(settings: Settings) -> dict[str | None, Storefront]:
    """The destinations file's entries, or the default entry the variables form; a bad file
    raises InvalidDestinations (at start that stops the gateway with the located errors)."""
    if settings.destinations is not None:
        return read_destinations(settings.destinations)
    return {None: default_storefront(settings)}


class DestinationBuilder:
    """Builds a storefront entry's destinations, reusing the one built before for an unchanged
    part of an entry, so a reload only restarts the dispatchers of what changed."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient, browsers: Browsers) -> None:
        self.settings = settings
        self.http = http
        self.browsers = browsers
        self.fields = settings.product_fields or DEFAULT_FIELDS
        self._built: dict[tuple[str, str], Destination] = {}

    @staticmethod
    def _parts(client: str | None, front: Storefront) -> list[tuple[str, str, Any]]:
        """(outbox name, kind, settings) of each destination an entry configures."""
        parts = (
            ("cdp", front.cdp if front.cdp and front.cdp.client_key else None),
            ("send", front.send),
            ("discover", front.discover),
            ("webhook", front.webhook),
        )
        return [(destination_name(kind, client), kind, part) for kind, part in parts if part]

    def __call__(self, client: str | None, front: Storefront) -> list[Destination]:
        out = []
        for name, kind, part in self._parts(client, front):
            key = (name, repr(part))
            if key not in self._built:
                built = self._build(kind, part)
                built.name = name  # unique per client in the outbox
                self._built[key] = built
            out.append(self._built[key])
        return out

    def adopt(self, fronts: Mapping[str | None, Storefront], routing: Routing) -> None:
        """Take the destinations a service already runs for these entries as built here."""
        for client, front in fronts.items():
            running = {d.name: d for d in routing.clients.get(client, ())}
            for name, _, part in self._parts(client, front):
                if name in running:
                    self._built[(name, repr(part))] = running[name]

    def _build(self, kind: str, part: Any) -> Destination:
        settings, http = self.settings, self.http
        if kind == "cdp":
            config = CdpConfig(
                part.client_key,
                part.pos or settings.point_of_sale,
                part.channel,
                part.order_mode,
                product_fields=settings.product_fields,
            )
            return CdpDestination(http, _base(part.url), config, self.browsers.resolve)
        if kind == "send":
            return SendDestination(http, _base(part.url), part.site_id, self.fields)
        if kind == "discover":
            return DiscoverDestination(http, str(part.url), part.api_key)
        return WebhookDestination(http, str(part.url), part.secret)

    def routing(self, fronts: Mapping[str | None, Storefront]) -> Routing:
        return Routing(
            {client: self(client, front) for client, front in fronts.items()},
            {client: front.events for client, front in fronts.items()},
        )


def routing(settings: Settings, http: httpx.AsyncClient, browsers: Browsers) -> Routing:
    """Each storefront's destinations, from the destinations file or the `OCGW_*` variables."""
    return DestinationBuilder(settings, http, browsers).routing(storefronts(settings))


def destinations(
    settings: Settings, http: httpx.AsyncClient, browsers: Browsers
) -> list[Destination]:
    """The destinations every event goes to: the JSON lines file when asked for, or when no
    storefront has any destination."""
    build = DestinationBuilder(settings, http, browsers)
    if settings.events_file or not any(build(c, f) for c, f in storefronts(settings).items()):
        return [FileDestination(settings.events_path)]
    return []


def tracker(
    settings: Settings,
    state: State,
    http: httpx.AsyncClient,
    upstream: Upstream,
    identity: Identity | None,
    pending: PendingProfiles | None = None,
    observe_delivery: Callable[[str, str, int], None] | None = None,
) -> TrackingService:
    ids = browsers(settings, state, http)
    return TrackingService(
        tracking_config(settings),
        outbox=state.outbox,
        profiles=state.profiles,
        carts=state.carts,
        exposures=state.exposures,
        browsers=ids,
        destinations=destinations(settings, http, ids),
        routing=routing(settings, http, ids),
        upstream=upstream,
        identity=identity,
        pending=pending,
        policy=partial(
            Policy,
            max_attempts=settings.max_attempts,
            max_age=settings.max_event_age,
            observe=observe_delivery,
        ),
    )


async def follow_destinations(
    settings: Settings,
    http: httpx.AsyncClient,
    tracking: TrackingService,
    personalize: Personalize | None,
) -> Callable[[], Awaitable[None]]:
    """Reload the destinations file when it changes (a bad edit is logged and changes nothing);
    returns what stops following it."""
    path = settings.destinations
    if path is None:
        return _nothing
    build = DestinationBuilder(settings, http, tracking.browsers)
    build.adopt(storefronts(settings), tracking.routing)  # reused where a reload changes nothing

    async def reload() -> None:
        try:
            fronts = await asyncio.to_thread(read_destinations, path)
        except InvalidDestinations as exc:
            for error in exc.errors:
                log.error("destinations file rejected, the previous one stays: %s", error)
            return
        await tracking.use(build.routing(fronts))
        if personalize is not None:
            personalize.use(flows(settings, fronts))
        log.info("destinations file reloaded: %d storefronts", len(fronts))

    task = asyncio.create_task(watch(path, reload, 1.0, signature(path)), name="destinations")

    async def stop() -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    return stop


async def _nothing() -> None:
    return None


def flows(
    settings: Settings, fronts: Mapping[str | None, Storefront]
) -> dict[str | None, PersonalizeConfig]:
    """Each storefront's Personalize flow (its CDP tenant, flow and point of sale)."""
    return {
        client: PersonalizeConfig(
            url=_base(front.cdp.url),
            flow=front.cdp.personalize_flow,
            client_key=front.cdp.client_key,
            channel=front.cdp.channel,
            pos=front.cdp.pos or settings.point_of_sale,
            budget=settings.personalize_timeout_ms / 1000,
            segments_path=settings.personalize_segments_path,
            params=tuple(settings.personalize_params.items()),
        )
        for client, front in fronts.items()
        if front.cdp is not None and front.cdp.personalize_flow
    }


def client_servers(settings: Settings) -> dict[str, str]:
    """URL prefix -> the `server` label of the calls the shared httpx client makes to it."""
    named = {
        "cdp": settings.cdp_url,
        "send": settings.send_url,
        "discover": settings.discover_url,
        "webhook": settings.webhook_url,
    }
    out = {_base(url): name for name, url in named.items() if url}
    if settings.cdp_url:
        out[_base(settings.cdp_url) + "/v2/callFlows"] = "personalize"
    return out


def personalize(settings: Settings, http: httpx.AsyncClient) -> Personalize | None:
    found = flows(settings, storefronts(settings))
    if not found:
        return None
    return Personalize(found, http)


def decider(
    settings: Settings,
    state: State,
    http: httpx.AsyncClient,
    pending: PendingProfiles | None = None,
) -> DecisionService:
    """`pending` is the tracker's: a list call waits for the profile a login is still reading."""
    return DecisionService(
        decisions_config(settings),
        profiles=state.profiles,
        versions=state.versions,
        personalize=personalize(settings, http),
        pending=pending,
    )


def console_config(settings: Settings) -> ConsoleConfig:
    preview = None
    if settings.preview_username and settings.preview_password and settings.preview_client_id:
        preview = PreviewConfig(
            upstream=settings.upstream,
            client_id=settings.preview_client_id,
            username=settings.preview_username,
            password=settings.preview_password,
        )
    return ConsoleConfig(
        session_secret=settings.session_secret,
        session_seconds=settings.session_hours * 3600,
        secure_cookies=settings.secure_cookies,
        require_approval=settings.require_approval,
        max_failures_account=settings.signin_failures,
        max_failures_ip=settings.signin_failures_ip,
        failure_window=settings.signin_window,
        trusted_proxies=frozenset(settings.trusted_proxies),
        preview=preview,
        min_visitors=settings.experiment_min_visitors,
    )
