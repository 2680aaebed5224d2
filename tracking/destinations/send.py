"""Sitecore Send (Moosend) website tracking: `POST {send_url}/identify` and `/track`.

The shopper's IP and user agent travel as `X-Original-Request-IP-Address` and
`X-Original-User-Agent`, as Send's own server-side tracker does. A removal is ADDED_TO_ORDER with
`itemQuantity: -1`. Updates, searches and clears have no Send action and are not sent.
Product fields beyond code, name, prices and quantity (itemImage, itemUrl, itemCategory, ...)
come from the product through configurable paths (`tracking.productfields`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import httpx

from state import events as ev
from state.events import Event
from tracking.destinations.outcome import check
from tracking.productfields import DEFAULT_FIELDS, ProductFields

ACCEPTS = frozenset(
    {
        ev.IDENTIFIED,
        ev.PRODUCT_VIEWED,
        ev.LINE_ADDED,
        ev.LINE_REMOVED,
        ev.ORDER_SUBMITTED,
        ev.CART_ABANDONED,
    }
)
_NAMESPACE = uuid.UUID("6f1c0c52-8f0e-4d8e-9a57-3b7f0e4f2a11")


def contact_id(visitor: str | None) -> str:
    """Send wants a dashless UUID per contact: derived from the visitor, so stable everywhere."""
    return uuid.uuid5(_NAMESPACE, visitor or "unknown").hex


def requests(
    event: Event, site_id: str, fields: ProductFields = DEFAULT_FIELDS
) -> list[tuple[str, dict[str, Any]]]:
    """(path, body) pairs for one event; `fields` maps Send product fields to product paths."""
    data = event.data
    user = data.get("user") or {}
    email = user.get("Email") or event.context.get("email") or ""
    base: dict[str, Any] = {
        "siteId": site_id,
        "ContactId": contact_id(event.visitor),
        "sessionId": uuid.uuid5(
            _NAMESPACE, f"{event.browser_id or event.visitor}:{event.time[:10]}"
        ).hex,
        "ContactEmailAddress": email,
    }
    origin = event.context.get("origin") or ""
    if event.type == ev.IDENTIFIED:
        if not email:
            return []
        name = " ".join(p for p in (user.get("FirstName"), user.get("LastName")) if p)
        body = {"actionType": "IDENTIFY", **base}
        if name:
            body["ContactName"] = name
        return [("/identify", body)]
    if event.type == ev.PRODUCT_VIEWED:
        product = data.get("product") or {}
        item = _item(product, product, 1, origin, fields)
        url = item["itemUrl"]
        return [
            (
                "/track",
                {
                    "actionType": "PAGE_VIEWED",
                    **base,
                    "Url": url,
                    "properties": [{"product": item}],
                },
            )
        ]
    if event.type in (ev.LINE_ADDED, ev.LINE_REMOVED):
        line = data.get("lineitem") or {}
        quantity = -1 if event.type == ev.LINE_REMOVED else int(line.get("Quantity") or 1)
        product = line.get("Product") or {"ID": line.get("ProductID")}
        item = _item(product, line, quantity, origin, fields)
        return [
            (
                "/track",
                {
                    "actionType": "ADDED_TO_ORDER",
                    **base,
                    "Url": item["itemUrl"],
                    "properties": [{"product": item}],
                },
            )
        ]
    if event.type in (ev.ORDER_SUBMITTED, ev.CART_ABANDONED):
        lines = data.get("lineitems") or []
        products = data.get("products") or {}
        items = [
            _item(
                products.get(line.get("ProductID")) or line.get("Product") or {},
                line,
                int(line.get("Quantity") or 1),
                origin,
                fields,
            )
            for line in lines
        ]
        if not items:
            return []
        order = data.get("order") or {}
        total = float(
            order.get("Total") or data.get("value") or sum(i["itemTotalPrice"] for i in items)
        )
        action = "ORDER_COMPLETED" if event.type == ev.ORDER_SUBMITTED else "CART_ABANDONED"
        return [
            (
                "/track",
                {
                    "actionType": action,
                    **base,
                    "Url": origin or "",
                    "properties": [{"products": items, "totalPrice": total}],
                },
            )
        ]
    return []


def _item(
    product: dict[str, Any],
    line: dict[str, Any],
    quantity: int,
    origin: str,
    fields: ProductFields,
) -> dict[str, Any]:
    """Send's product model from an OrderCloud product (and line item, for prices)."""
    product_id = str(product.get("ID") or line.get("ProductID") or "")
    price = line.get("UnitPrice")
    if price is None:
        breaks = (product.get("PriceSchedule") or {}).get("PriceBreaks") or [{}]
        price = breaks[0].get("Price") if breaks else None
    price = float(price or 0)
    item: dict[str, Any] = {
        "itemCode": product_id,
        "itemName": str(product.get("Name") or product_id),
        "itemPrice": price,
        "itemQuantity": quantity,
        "itemTotalPrice": float(line.get("LineTotal") or price * max(quantity, 0)),
    }
    mapped = fields.values(product)
    # Send requires itemUrl: a storefront path is made absolute, a missing one is guessed.
    url = mapped.pop("itemUrl", None)
    if isinstance(url, str) and url.startswith("/"):
        url = origin + url
    item["itemUrl"] = url if isinstance(url, str) and url else f"{origin}/products/{product_id}"
    image = mapped.pop("itemImage", None)
    if isinstance(image, str) and image.startswith(("http://", "https://")):
        item["itemImage"] = image  # Send drops products whose image is not a URL
    item.update(mapped)
    if product.get("Description"):
        item["itemDescription"] = str(product["Description"])[:500]
    return item


class SendDestination:
    name = "send"
    accepts = ACCEPTS
    max_batch = 1

    def __init__(
        self,
        client: httpx.AsyncClient,
        url: str,
        site_id: str,
        product_fields: ProductFields = DEFAULT_FIELDS,
    ) -> None:
        self.client = client
        self.url = url.rstrip("/")
        self.site_id = site_id
        self.product_fields = product_fields

    async def send(self, events: Sequence[Event]) -> None:
        for event in events:
            headers = {"Accept": "application/json"}
            if event.context.get("ip"):
                headers["X-Original-Request-IP-Address"] = event.context["ip"]
            if event.context.get("user_agent"):
                headers["X-Original-User-Agent"] = event.context["user_agent"]
            for path, body in requests(event, self.site_id, self.product_fields):
                check(await self.client.post(self.url + path, json=body, headers=headers))
