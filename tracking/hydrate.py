"""Fill in what an event needs from OrderCloud, with the shopper's token, after the response.

An order submit carries the Order, all its LineItems (every page), the Products on them and the
User, like OrderCloud's own Tracking Events, even when the cart was built before the gateway saw
it. Hydration is best effort: a failed look-up leaves the event with what the call itself showed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol
from urllib.parse import quote

from state import events as ev
from state.events import Event
from tracking.privacy import scrub

log = logging.getLogger(__name__)
_PAGE_SIZE = 100
_MAX_PAGES = 50


class Upstream(Protocol):
    async def get_json(
        self, path_and_query: str, token: str | None, timeout: float | None = None
    ) -> tuple[int, Any]: ...


async def hydrate(event: Event, token: str, upstream: Upstream, timeout: float = 10.0) -> None:
    """Add OrderCloud objects to `event` in place."""

    async def get(path: str) -> Any:
        status, body = await upstream.get_json(path, token, timeout)
        return scrub(body) if 200 <= status < 300 else None

    if event.type == ev.IDENTIFIED:
        user, orders = await asyncio.gather(get("/v1/me"), get(_HISTORY))
        if isinstance(user, dict):
            apply_user(event, user)
        if isinstance(orders, dict):
            event.data["history"] = _history(orders)
    elif event.type == ev.PRODUCT_VIEWED:
        product_id = (event.data.get("product") or {}).get("ID")
        if product_id:
            found = await get(
                f"/v1/me/categories?productID={quote(str(product_id), safe='')}"
                "&depth=all&pageSize=100"
            )
            items = found.get("Items") if isinstance(found, dict) else None
            # No list (e.g. a 404) means no categories known: remembered like any answer.
            event.data["categories"] = [
                c["ID"] for c in items or [] if isinstance(c, dict) and c.get("ID")
            ]
    elif event.type in (ev.LINE_ADDED, ev.LINE_UPDATED, ev.LINE_REMOVED):
        path = _order_path(event)
        if event.removes_line:  # the cart as it is now: what CDP's CLEAR_CART + ADDs restate
            order, lines = await asyncio.gather(get(path), _all_lines(path, get))
            if lines is not None:
                event.data["lineitems"] = [line for line in lines if _in_cart(line)]
        else:
            order = await get(path)
        if isinstance(order, dict):
            event.data["order_id"] = order.get("ID") or event.data.get("order_id")
            event.data["order"] = _summary(order)
            if order.get("Currency"):
                event.context.setdefault("currency", order["Currency"])
    elif event.type == ev.ORDER_SUBMITTED:
        await _submitted(event, get)


def apply_user(event: Event, user: dict[str, Any]) -> None:
    """Record the MeUser on an event: visitor id `{Buyer.ID}-{user ID}`, email, locale."""
    event.data["user"] = user
    buyer = (user.get("Buyer") or {}).get("ID")
    if user.get("ID"):
        event.visitor = f"{buyer}-{user['ID']}" if buyer else str(user["ID"])
        event.anonymous = False
    locale = user.get("Locale") or {}
    for key, field in (("language", "Language"), ("currency", "Currency")):
        if locale.get(field):
            event.context[key] = locale[field]
    if user.get("Email"):
        event.context["email"] = user["Email"]


async def _submitted(event: Event, get: Any) -> None:
    data = event.data
    order = data.get("order") or {}
    order_id = order.get("ID") or data.get("order_id")
    direction = data.get("direction") or "Outgoing"
    if not order_id:
        return
    base = f"/v1/orders/{quote(direction, safe='')}/{quote(str(order_id), safe='')}"
    if not order:
        order = await get(base) or {}
        data["order"] = order
    lines, user = await asyncio.gather(_all_lines(base, get), get("/v1/me"))
    if lines is not None:
        data["lineitems"] = lines
    ids = sorted(
        {
            str(line.get("ProductID"))
            for line in data.get("lineitems") or []
            if line.get("ProductID")
        }
    )
    found = await asyncio.gather(*(get(f"/v1/me/products/{quote(pid, safe='')}") for pid in ids))
    data["products"] = {
        pid: product for pid, product in zip(ids, found) if isinstance(product, dict)
    }
    if isinstance(user, dict):
        apply_user(event, user)
    if order.get("Currency"):
        event.context.setdefault("currency", order["Currency"])


async def _all_lines(base: str, get: Any) -> list[dict[str, Any]] | None:
    """Every line item of the order at `base` (all pages); None if the first page failed."""
    lines: list[dict[str, Any]] = []
    for page in range(1, _MAX_PAGES + 1):
        body = await get(f"{base}/lineitems?page={page}&pageSize={_PAGE_SIZE}")
        if not isinstance(body, dict):
            return lines or None
        lines.extend(i for i in body.get("Items") or [] if isinstance(i, dict))
        pages = (body.get("Meta") or {}).get("TotalPages") or 1
        if page >= pages:
            break
    return lines


# The shopper's submitted orders (newest first), so segments such as "repeat customer" know the
# history OrderCloud holds, not only what the gateway saw since it was deployed.
_HISTORY = "/v1/me/orders?Status=!Unsubmitted&sortBy=!DateSubmitted&pageSize=100"


def _history(page: dict[str, Any]) -> dict[str, Any]:
    """Order count and amount spent from a ListPage of the shopper's submitted orders."""
    orders = [o for o in page.get("Items") or [] if isinstance(o, dict)]
    count = (page.get("Meta") or {}).get("TotalCount")
    return {
        "orders": count if isinstance(count, int) else len(orders),
        "spent": round(sum(float(o.get("Total") or 0) for o in orders), 2),
    }


def _in_cart(line: dict[str, Any]) -> bool:
    quantity = line.get("Quantity")
    return not isinstance(quantity, int) or quantity > 0


def _order_path(event: Event) -> str:
    data = event.data
    if data.get("cart") or not data.get("order_id"):
        return "/v1/cart"
    direction = quote(str(data.get("direction") or "Outgoing"), safe="")
    return f"/v1/orders/{direction}/{quote(str(data['order_id']), safe='')}"


def _summary(order: dict[str, Any]) -> dict[str, Any]:
    keys = ("ID", "Status", "Currency", "Subtotal", "Total", "LineItemCount", "DateCreated")
    return {k: order.get(k) for k in keys if k in order}
