"""The composition root: the one place that turns `Settings` into the narrow configs and wired
services that the app (`gateway.app`) and the command line (`gateway.cli`) run.

Each service gets only what it needs: a small frozen config and the state interfaces it uses.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from console.config import ConsoleConfig, PreviewConfig
from decisions.personalize import Personalize, PersonalizeConfig
from decisions.service import DecisionsConfig, DecisionService
from gateway.settings import Settings
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
from tracking.productfields import DEFAULT_FIELDS, ProductFields
from tracking.service import Identity, TrackingConfig, TrackingService


def state_config(settings: Settings) -> StateConfig:
    return StateConfig(
        location=settings.store,
        prefix=settings.redis_prefix,
        spool=settings.spool,
        lease_seconds=settings.lease_seconds,
        partitions=settings.partitions,
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
    )


def decisions_config(settings: Settings) -> DecisionsConfig:
    return DecisionsConfig(tables=settings.decisions, client_key=settings.cdp_client_key)


def cdp_pos(settings: Settings) -> str:
    """The point of sale: configured, else the upstream's host name (it must exist in CDP)."""
    return settings.cdp_pos or urlsplit(settings.upstream).hostname or "ocgateway"


def _base(url: object) -> str:
    return str(url).rstrip("/")


def browsers(settings: Settings, state: State, http: httpx.AsyncClient) -> Browsers:
    """Browser ids minted through CDP's browser-create call when CDP is configured."""
    if settings.cdp_url and settings.cdp_client_key:
        mint = partial(cdp.create_browser, http, _base(settings.cdp_url), settings.cdp_client_key)
        return Browsers(state.browser_ids, mint)
    return Browsers(state.browser_ids, local_uuid)


def destinations(
    settings: Settings, http: httpx.AsyncClient, browsers: Browsers
) -> list[Destination]:
    """Every configured destination; the JSON lines file when none is (or when asked for)."""
    fields = (
        ProductFields.parse(settings.send_product_fields)
        if settings.send_product_fields
        else DEFAULT_FIELDS
    )
    out: list[Destination] = []
    if settings.cdp_url and settings.cdp_client_key:
        config = CdpConfig(
            settings.cdp_client_key,
            cdp_pos(settings),
            settings.cdp_channel,
            settings.cdp_order_mode,
            product_fields=fields if settings.send_product_fields else None,
        )
        out.append(CdpDestination(http, _base(settings.cdp_url), config, browsers.resolve))
    if settings.send_url and settings.send_site_id:
        out.append(SendDestination(http, _base(settings.send_url), settings.send_site_id, fields))
    if settings.discover_url:
        out.append(DiscoverDestination(http, str(settings.discover_url), settings.discover_api_key))
    if settings.webhook_url:
        out.append(WebhookDestination(http, str(settings.webhook_url), settings.webhook_secret))
    if settings.events_file or not out:
        out.append(FileDestination(settings.events_file or _beside_store(settings, "events.jsonl")))
    return out


def _beside_store(settings: Settings, name: str) -> Path:
    if StateConfig(settings.store).is_redis:
        return Path(name)
    return Path(settings.store).parent / name


def tracker(
    settings: Settings,
    state: State,
    http: httpx.AsyncClient,
    upstream: Upstream,
    identity: Identity | None,
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
        upstream=upstream,
        identity=identity,
        policy=partial(Policy, max_attempts=settings.max_attempts, max_age=settings.max_event_age),
    )


def personalize(settings: Settings, http: httpx.AsyncClient) -> Personalize | None:
    if not (settings.personalize_flow and settings.cdp_url):
        return None
    config = PersonalizeConfig(
        url=_base(settings.cdp_url),
        flow=settings.personalize_flow,
        client_key=settings.cdp_client_key or "",
        channel=settings.cdp_channel,
        pos=cdp_pos(settings),
        budget=settings.personalize_timeout_ms / 1000,
        segments_path=settings.personalize_segments_path,
    )
    return Personalize(config, http)


def decider(settings: Settings, state: State, http: httpx.AsyncClient) -> DecisionService:
    return DecisionService(
        decisions_config(settings),
        profiles=state.profiles,
        versions=state.versions,
        personalize=personalize(settings, http),
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
