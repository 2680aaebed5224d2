"""Sitecore Discover Events API: view:pdp, a2c:pdp, status:cart and order:confirm.

Discover has no event that takes a product out of the cart, but `status:cart` states the cart's
contents: a removal (or an update to quantity 0) sends it with the remaining lines.

Events sent from a server must carry the event time (`t`, `t0`), a user id, and the shopper's IP
and user agent inside the body (`value.context.geo.ip`, `value.context.browser.user_agent`).
The event object travels as the JSON string form field `data`; the API key goes in Authorization.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx

from state import events as ev
from state.events import Event
from tracking.destinations.outcome import check

ACCEPTS = frozenset(
    {ev.PRODUCT_VIEWED, ev.LINE_ADDED, ev.LINE_UPDATED, ev.LINE_REMOVED, ev.ORDER_SUBMITTED}
)


def payload(event: Event) -> dict[str, Any] | None:
    data = event.data
    context: dict[str, Any] = {
        "geo": {"ip": event.context.get("ip", "")},
        "browser": {"user_agent": event.context.get("user_agent", "")},
    }
    if event.context.get("language"):
        context["page"] = {"locale_language": str(event.context["language"]).lower()[:2]}
    if event.type == ev.PRODUCT_VIEWED:
        product = data.get("product") or {}
        kind, name, value = "view", "pdp", {"products": [{"sku": str(product.get("ID", ""))}]}
    elif event.removes_line:
        if "lineitems" not in data:
            return None  # the remaining lines could not be read
        products = [_cart_product(line) for line in data["lineitems"]]
        kind, name, value = "status", "cart", {"products": products}
    elif event.type == ev.LINE_ADDED:
        kind, name, value = "a2c", "pdp", {"products": [_cart_product(data.get("lineitem") or {})]}
    elif event.type == ev.ORDER_SUBMITTED:
        order = data.get("order") or {}
        products = [
            {
                "sku": str(line.get("ProductID", "")),
                "quantity": int(line.get("Quantity") or 1),
                "price": float(line.get("LineTotal") or 0) / max(int(line.get("Quantity") or 1), 1),
            }
            for line in data.get("lineitems") or []
        ]
        value = {
            "products": products,
            "order_id": str(order.get("ID") or data.get("order_id")),
            "total": float(order.get("Total") or 0),
        }
        if event.visitor and not event.anonymous:
            value["user"] = {"id": event.visitor}
        kind, name = "order", "confirm"
    else:
        return None
    millis = int(event.occurred_at * 1000)
    return {
        "type": kind,
        "name": name,
        "t": millis,
        "t0": millis,
        "user_id": event.visitor or event.browser_id or "unknown",
        "value": {"context": context, **value},
    }


def _cart_product(line: dict[str, Any]) -> dict[str, Any]:
    return {
        "sku": str(line.get("ProductID", "")),
        "quantity": int(line.get("Quantity") or 1),
        "price": float(line.get("UnitPrice") or 0),
    }


class DiscoverDestination:
    name = "discover"
    accepts = ACCEPTS
    max_batch = 1

    def __init__(self, client: httpx.AsyncClient, url: str, api_key: str | None) -> None:
        self.client = client
        self.url = url
        self.api_key = api_key

    async def send(self, events: Sequence[Event]) -> None:
        headers = {"Authorization": self.api_key} if self.api_key else {}
        for event in events:
            body = payload(event)
            if body is None:
                continue
            form = {"data": json.dumps(body, separators=(",", ":")), "json": "1"}
            check(await self.client.post(self.url, data=form, headers=headers))
