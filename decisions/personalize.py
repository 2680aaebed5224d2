"""Segment membership reported by a Sitecore Personalize flow (POST /v2/callFlows), per guest.

A shopper's list call waits for CDP at most `personalize_timeout_ms`; past that it goes on with
local segments and the answer, when it comes, lands in the cache for the next call. Cached
answers older than `refresh_after` are refreshed in the background while still being served.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from cachetools import TTLCache

from gateway.identity import guest_identifier

log = logging.getLogger(__name__)


def segment_names(body: Any, path: str) -> frozenset[str]:
    """Casefolded names at a dotted path: a list of names, of {name|code|id: …}, or 'a,b'."""
    node = body
    for part in filter(None, path.split(".")):
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return frozenset()
    if isinstance(node, str):
        node = node.split(",")
    if not isinstance(node, list):
        return frozenset()
    names = set()
    for item in node:
        if isinstance(item, dict):
            item = item.get("name") or item.get("code") or item.get("id")
        if isinstance(item, str) and item.strip():
            names.add(item.strip().casefold())
    return frozenset(names)


@dataclass(frozen=True, slots=True)
class PersonalizeConfig:
    """Where a storefront's Personalize flow is and how long a shopper may wait for it."""

    url: str  # the CDP API base, e.g. https://api-engage-eu.sitecorecloud.io
    flow: str  # friendlyId of the flow that returns the visitor's segments
    client_key: str = ""
    channel: str = "WEB"
    pos: str = ""
    budget: float = 0.15  # seconds a list call waits for CDP
    segments_path: str = "segments"  # where segment names sit in the flow's response
    params: tuple[tuple[str, str], ...] = ()  # custom params every call of this flow carries


@dataclass(frozen=True, slots=True)
class Guest:
    """What one callFlows request says about the shopper, gathered from the call by decisions."""

    visitor_id: str
    anonymous: bool
    browser_id: str | None = None
    generation: float = 0.0  # changes at each login or transfer: a new cache entry
    client_id: str | None = None  # the storefront (API client) the shopper uses
    language: str | None = None
    currency: str | None = None
    user_agent: str | None = None
    utm: tuple[tuple[str, str], ...] = ()
    country: str | None = None


def flow_body(config: PersonalizeConfig, guest: Guest) -> dict[str, Any] | None:
    """The callFlows body, or None when the guest cannot be named.

    The request names the guest one way only: a registered shopper by the `ordercloud` identifier
    their IDENTITY events carry (so the flow answers for the identified guest even before CDP has
    stitched the browser to them), an anonymous one by the browser id. Params follow the Cloud
    SDK: the configured ones, `utm` from the campaign parameters and `geo.country`."""
    params: dict[str, Any] = dict(config.params)
    if guest.utm:
        params["utm"] = dict(guest.utm)
    if guest.country:
        params["geo"] = {"country": guest.country}
    body: dict[str, Any] = {
        "clientKey": config.client_key,
        "channel": config.channel,
        "language": (guest.language or "en").split("-")[0].lower(),
        "pointOfSale": config.pos,
        "friendlyId": config.flow,
        "params": params,
    }
    if guest.currency:
        body["currencyCode"] = guest.currency.upper()
    if not guest.anonymous:
        body["identifiers"] = guest_identifier(guest.visitor_id)
    elif guest.browser_id:
        body["browserId"] = guest.browser_id
    else:
        return None
    return body


class Personalize:
    """callFlows client with a per-guest TTL cache, in-flight de-duplication and a latency budget.

    Flows are per storefront (API client id; None is the default). A cache entry is keyed by the
    storefront, the visitor and their login generation, so a login or transfer (which changes the
    generation in the shared profile) asks the flow again on every replica."""

    def __init__(
        self,
        flows: Mapping[str | None, PersonalizeConfig],
        client: httpx.AsyncClient,
        *,
        ttl: float = 600.0,
        refresh_after: float = 60.0,
        failure_ttl: float = 30.0,
        maxsize: int = 100_000,
    ) -> None:
        self.flows = dict(flows)
        self.client = client
        self.refresh_after = refresh_after
        self.cache: TTLCache[str, tuple[float, frozenset[str]]] = TTLCache(maxsize, ttl)
        self.failed: TTLCache[str, bool] = TTLCache(maxsize, failure_ttl)
        self.inflight: dict[str, asyncio.Task[frozenset[str] | None]] = {}
        self.stats = {"cdp_calls": 0, "cdp_errors": 0, "cdp_timeouts": 0, "cdp_cache_hits": 0}

    def use(self, flows: Mapping[str | None, PersonalizeConfig]) -> None:
        """Serve these flows from now on (a destinations file reload)."""
        self.flows = dict(flows)

    def flow_for(self, client_id: str | None) -> PersonalizeConfig | None:
        flows = self.flows
        return flows.get(client_id) if client_id in flows else flows.get(None)

    async def _fetch(
        self, key: str, config: PersonalizeConfig, body: dict[str, Any], agent: str | None
    ) -> frozenset[str] | None:
        self.stats["cdp_calls"] += 1
        headers = {"Accept": "application/json"}
        if agent:
            headers["User-Agent"] = agent
        try:
            # The budget only bounds the shopper's wait; the fetch itself may finish later and fill
            # the cache, within a timeout of its own.
            response = await self.client.post(
                config.url.rstrip("/") + "/v2/callFlows",
                json=body,
                headers=headers,
                timeout=max(2.0, config.budget * 10),
            )
            response.raise_for_status()
            names = segment_names(response.json(), config.segments_path)
        except Exception as exc:  # noqa: BLE001 - CDP down or answering nonsense: local segments
            self.stats["cdp_errors"] += 1
            self.failed[key] = True
            log.warning("personalize: flow call failed for a visitor: %s", type(exc).__name__)
            return None
        self.cache[key] = (time.monotonic(), names)
        return names

    def _start(
        self, key: str, config: PersonalizeConfig, body: dict[str, Any], agent: str | None
    ) -> asyncio.Task[frozenset[str] | None]:
        task = self.inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._fetch(key, config, body, agent))
            self.inflight[key] = task
            task.add_done_callback(lambda _t, k=key: self.inflight.pop(k, None))
        return task

    async def segments(self, guest: Guest, budget: float | None = None) -> frozenset[str] | None:
        """CDP segment names for this guest, or None when unknown within the budget (the flow's
        own, or less when the caller has spent part of it already)."""
        config = self.flow_for(guest.client_id)
        if config is None:
            return None
        key = f"{guest.client_id or ''}\x00{guest.visitor_id}\x00{guest.generation}"
        entry = self.cache.get(key)
        if entry is not None:
            self.stats["cdp_cache_hits"] += 1
            if time.monotonic() - entry[0] > self.refresh_after:
                body = flow_body(config, guest)
                if body is not None:
                    self._start(key, config, body, guest.user_agent)
            return entry[1]
        body = flow_body(config, guest)
        if body is None or key in self.failed:
            return None
        task = self._start(key, config, body, guest.user_agent)
        wait = config.budget if budget is None else min(budget, config.budget)
        try:
            return await asyncio.wait_for(asyncio.shield(task), max(wait, 0.0))
        except TimeoutError:
            self.stats["cdp_timeouts"] += 1
            return None

    async def close(self) -> None:
        for task in list(self.inflight.values()):
            task.cancel()
        await asyncio.gather(*self.inflight.values(), return_exceptions=True)
