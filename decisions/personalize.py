"""Segment membership reported by a Sitecore Personalize flow (POST /v2/callFlows), per visitor.

A shopper's list call waits for CDP at most `personalize_timeout_ms`; past that it goes on with
local segments and the answer, when it comes, lands in the cache for the next call. Cached
answers older than `refresh_after` are refreshed in the background while still being served.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx
from cachetools import TTLCache

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
    """Where the Personalize flow is and how long a shopper may wait for it."""

    url: str  # the CDP API base, e.g. https://api-engage-eu.sitecorecloud.io
    flow: str  # friendlyId of the flow that returns the visitor's segments
    client_key: str = ""
    channel: str = "WEB"
    pos: str = ""
    budget: float = 0.15  # seconds a list call waits for CDP
    segments_path: str = "segments"  # where segment names sit in the flow's response


class Personalize:
    """callFlows client with a per-visitor TTL cache, in-flight de-duplication and a latency budget."""

    def __init__(
        self,
        config: PersonalizeConfig,
        client: httpx.AsyncClient,
        *,
        ttl: float = 600.0,
        refresh_after: float = 60.0,
        failure_ttl: float = 30.0,
        maxsize: int = 100_000,
    ) -> None:
        self.url = config.url.rstrip("/") + "/v2/callFlows"
        self.config = config
        self.client = client
        self.budget = config.budget
        self.refresh_after = refresh_after
        self.cache: TTLCache[str, tuple[float, frozenset[str]]] = TTLCache(maxsize, ttl)
        self.failed: TTLCache[str, bool] = TTLCache(maxsize, failure_ttl)
        self.inflight: dict[str, asyncio.Task[frozenset[str] | None]] = {}
        self.stats = {"cdp_calls": 0, "cdp_errors": 0, "cdp_timeouts": 0, "cdp_cache_hits": 0}

    def body(self, browser_id: str, language: str | None, currency: str | None) -> dict[str, Any]:
        c = self.config
        return {
            "clientKey": c.client_key,
            "channel": c.channel,
            "language": (language or "en").split("-")[0].lower(),
            "currencyCode": (currency or "").upper() or None,
            "pointOfSale": c.pos,
            "friendlyId": c.flow,
            "browserId": browser_id,
            "params": {},
        }

    async def _fetch(self, visitor_id: str, body: dict[str, Any]) -> frozenset[str] | None:
        self.stats["cdp_calls"] += 1
        try:
            # The budget only bounds the shopper's wait; the fetch itself may finish later and fill
            # the cache, within a timeout of its own.
            response = await self.client.post(
                self.url,
                json={k: v for k, v in body.items() if v is not None},
                headers={"Accept": "application/json"},
                timeout=max(2.0, self.budget * 10),
            )
            response.raise_for_status()
            names = segment_names(response.json(), self.config.segments_path)
        except Exception as exc:  # noqa: BLE001 - CDP down or answering nonsense: local segments
            self.stats["cdp_errors"] += 1
            self.failed[visitor_id] = True
            log.warning("personalize: flow call failed for a visitor: %s", type(exc).__name__)
            return None
        self.cache[visitor_id] = (time.monotonic(), names)
        return names

    def _start(self, visitor_id: str, body: dict[str, Any]) -> asyncio.Task[frozenset[str] | None]:
        task = self.inflight.get(visitor_id)
        if task is None:
            task = asyncio.create_task(self._fetch(visitor_id, body))
            self.inflight[visitor_id] = task
            task.add_done_callback(lambda _t, v=visitor_id: self.inflight.pop(v, None))
        return task

    async def segments(
        self,
        visitor_id: str,
        browser_id: str | None,
        language: str | None = None,
        currency: str | None = None,
    ) -> frozenset[str] | None:
        """CDP segment names for this visitor, or None when unknown within the budget."""
        entry = self.cache.get(visitor_id)
        if entry is not None:
            self.stats["cdp_cache_hits"] += 1
            if browser_id and time.monotonic() - entry[0] > self.refresh_after:
                self._start(visitor_id, self.body(browser_id, language, currency))
            return entry[1]
        if not browser_id or visitor_id in self.failed:
            return None
        task = self._start(visitor_id, self.body(browser_id, language, currency))
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.budget)
        except TimeoutError:
            self.stats["cdp_timeouts"] += 1
            return None

    async def close(self) -> None:
        for task in list(self.inflight.values()):
            task.cancel()
        await asyncio.gather(*self.inflight.values(), return_exceptions=True)
