"""Sitecore CDP / Personalize Stream API: `POST {cdp_url}/v1.2/events`, one event per request.

Orders go out as ADD (every line) -> CONFIRM -> CHECKOUT in "multi" mode, or one ORDER_CHECKOUT
(after an IDENTITY) in "single" mode. The Stream API has no event that takes one line out of the
cart, so a removal (or an update to quantity 0) restates the cart: CLEAR_CART, then an ADD for
every remaining line, from the line items hydration read.
The Stream API documents no field for the shopper's IP or user agent, so none is sent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from gateway.identity import guest_identifier
from state import events as ev
from state.events import Event
from tracking.destinations.outcome import DeliveryError, check
from tracking.productfields import ProductFields

ACCEPTS = frozenset(
    {
        ev.IDENTIFIED,
        ev.PRODUCT_VIEWED,
        ev.PRODUCTS_SEARCHED,
        ev.LINE_ADDED,
        ev.LINE_UPDATED,
        ev.LINE_REMOVED,
        ev.CART_CLEARED,
        ev.ORDER_SUBMITTED,
        ev.CART_ABANDONED,
        ev.DECISION_EXPOSED,
    }
)


@dataclass(frozen=True, slots=True)
class CdpConfig:
    client_key: str
    pos: str
    channel: str = "WEB"
    order_mode: str = "multi"
    product_fields: ProductFields | None = None  # mapped values as ORDER_CHECKOUT item extensions


def payloads(event: Event, config: CdpConfig) -> list[dict[str, Any]]:
    """The Stream API bodies for one event, in the order they must be sent."""
    if not event.browser_id:
        raise ValueError("a CDP event needs a browser id")
    data = event.data
    order = data.get("order") or {}
    currency = _upper(event.context.get("currency") or order.get("Currency")) or "USD"
    base = {
        "channel": config.channel,
        "client_key": config.client_key,
        "pos": config.pos,
        "browser_id": event.browser_id,
        "language": _upper(event.context.get("language")) or "EN",
        "currency": currency,
        "page": _page(event),
    }

    def body(type_: str, **fields: Any) -> dict[str, Any]:
        return {"type": type_, **base, **fields}

    if event.type == ev.IDENTIFIED:
        return [_identity(event, body)]
    if event.type == ev.PRODUCT_VIEWED:
        product = data.get("product") or {}
        ext = {"productId": str(product.get("ID", "")), "productName": str(product.get("Name", ""))}
        return [body("VIEW", ext=ext)]
    if event.type == ev.PRODUCTS_SEARCHED:
        return [body("SEARCH", product_name=str(data.get("search", "")), product_type="PRODUCT")]
    if event.removes_line:
        if "lineitems" not in data:
            return []  # the remaining lines could not be read: emptying CDP's cart would be wrong
        adds = [
            body("ADD", product=_product(line, data.get("order_id"), event.time, currency))
            for line in data["lineitems"]
        ]
        return [body("CLEAR_CART"), *adds]
    if event.type in (ev.LINE_ADDED, ev.LINE_UPDATED):
        line = data.get("lineitem") or {}
        return [body("ADD", product=_product(line, data.get("order_id"), event.time, currency))]
    if event.type == ev.CART_CLEARED:
        return [body("CLEAR_CART")]
    if event.type == ev.ORDER_SUBMITTED:
        return _order(event, body, currency, config)
    if event.type == ev.CART_ABANDONED:
        ext = {
            "orderId": str(data.get("order_id") or ""),
            "value": float(data.get("value") or 0),
            "items": int(data.get("items") or 0),
        }
        return [body("CART_ABANDONED", ext=ext)]
    if event.type == ev.DECISION_EXPOSED:
        ext = {k: str(data.get(k, "")) for k in ("table", "rule", "variant")}
        return [body("DECISION_EXPOSED", ext=ext)]
    return []


def _identity(event: Event, body: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    user = event.data.get("user") or {}
    identifiers = [guest_identifier(event.visitor or "")]
    email = user.get("Email") or event.context.get("email")
    fields: dict[str, Any] = {"identifiers": identifiers}
    if email:
        fields["email"] = email
        identifiers.append({"provider": "email", "id": email})
    if user.get("FirstName"):
        fields["firstname"] = user["FirstName"]
    if user.get("LastName"):
        fields["lastname"] = user["LastName"]
    return body("IDENTITY", **fields)


def _order(
    event: Event, body: Callable[..., dict[str, Any]], currency: str, config: CdpConfig
) -> list[dict[str, Any]]:
    data = event.data
    order = data.get("order") or {}
    order_id = str(order.get("ID") or data.get("order_id") or "")
    lines = data.get("lineitems") or []
    if config.order_mode == "single":
        out = [_identity(event, body)] if event.visitor and not event.anonymous else []
        items = [
            with_extension(
                {
                    "type": "PRODUCT",
                    "referenceId": f"{order_id}-{line.get('ID')}",
                    "orderedAt": event.time,
                    "status": "PURCHASED",
                    "currencyCode": currency,
                    "price": float(line.get("UnitPrice") or 0),
                    "name": str((line.get("Product") or {}).get("Name") or line.get("ProductID")),
                    "productId": str(line.get("ProductID")),
                    "quantity": int(line.get("Quantity") or 1),
                },
                (data.get("products") or {}).get(line.get("ProductID")) or line.get("Product"),
                config.product_fields,
            )
            for line in lines
        ]
        checkout = {
            "referenceId": order_id,
            "orderedAt": event.time,
            "status": "PURCHASED",
            "currencyCode": currency,
            "price": float(order.get("Total") or 0),
            "paymentType": "other",
            "orderItems": items,
        }
        return out + [body("ORDER_CHECKOUT", order=checkout)]
    adds = [body("ADD", product=_product(line, order_id, event.time, currency)) for line in lines]
    confirm = body("CONFIRM", product=[{"item_id": _item_id(line)} for line in lines])
    checkout = body("CHECKOUT", reference_id=order_id.upper(), status="PURCHASED")
    return [*adds, confirm, checkout]


def with_extension(
    item: dict[str, Any], product: dict[str, Any] | None, fields: ProductFields | None
) -> dict[str, Any]:
    """An order item with the configured product fields as its data extension, when any."""
    values = fields.values(product) if fields is not None and product else {}
    if values:
        item["extensions"] = [{"name": "ext", "key": "default", **values}]
    return item


def _product(line: dict[str, Any], order_id: Any, at: str, currency: str) -> dict[str, Any]:
    product = line.get("Product") or {}
    xp = product.get("xp") or {}
    return {
        "type": _upper(xp.get("Type") if isinstance(xp, dict) else None) or "PRODUCT",
        "item_id": _item_id(line),
        "name": str(product.get("Name") or line.get("ProductID") or ""),
        "productId": str(line.get("ProductID") or product.get("ID") or ""),
        "referenceId": f"{order_id or 'cart'}-{line.get('ID')}",
        "orderedAt": at,
        "quantity": int(line.get("Quantity") or 1),
        "price": float(line.get("UnitPrice") or 0),
        "currency": currency,
    }


def _item_id(line: dict[str, Any]) -> str:
    return str(line.get("ID") or line.get("ProductID") or "")


def _page(event: Event) -> str:
    if event.type == ev.PRODUCT_VIEWED:
        return f"product/{(event.data.get('product') or {}).get('ID', '')}"
    if event.type == ev.PRODUCTS_SEARCHED:
        return "search"
    if event.type == ev.ORDER_SUBMITTED:
        return "checkout"
    if event.type == ev.IDENTIFIED:
        return "login"
    return "cart"


def _upper(value: Any) -> str | None:
    return str(value).upper() if value else None


async def create_browser(client: httpx.AsyncClient, cdp_url: str, client_key: str) -> str:
    """Mint a browser id server-side (the Stream API's browser-create call)."""
    response = await client.get(
        f"{cdp_url}/v1.2/browser/create.json", params={"client_key": client_key, "message": "{}"}
    )
    check(response)
    ref = response.json().get("ref")
    if not ref:
        raise DeliveryError("browser create returned no ref")
    return str(ref)


class CdpDestination:
    name = "cdp"
    accepts = ACCEPTS
    max_batch = 1

    def __init__(
        self,
        client: httpx.AsyncClient,
        url: str,
        config: CdpConfig,
        browser_for: Callable[[str | None], Awaitable[str]],
    ) -> None:
        """`browser_for(visitor)` finds or mints a browser id for events recorded without one."""
        self.client = client
        self.url = url.rstrip("/") + "/v1.2/events"
        self.config = config
        self.browser_for = browser_for

    async def send(self, events: Sequence[Event]) -> None:
        for event in events:
            if not event.browser_id:
                event.browser_id = await self.browser_for(event.visitor)
            for body in payloads(event, self.config):
                check(await self.client.post(self.url, json=body))
