"""What a recorded event changes in shared state: the visitor's cart, profile and conversions.

Runs in the background after the event is recorded, in record order per visitor. Every write is
atomic in its store (no lost updates between replicas) and safe to repeat.
"""

from __future__ import annotations

from typing import Any

from state import events as ev
from state.carts import Carts
from state.events import Event
from state.exposures import Exposures
from state.profiles import Change, Profile

KEPT_VIEWS = 50
_LINE_FIELDS = ("ID", "ProductID", "Quantity", "UnitPrice", "LineTotal")
_LINES = (ev.LINE_ADDED, ev.LINE_UPDATED, ev.LINE_REMOVED)


def cart_line(line: dict[str, Any]) -> dict[str, Any]:
    """What a cart keeps of a LineItem: enough to report it, nothing more."""
    kept = {k: line.get(k) for k in _LINE_FIELDS}
    kept["Product"] = {"ID": line.get("ProductID"), "Name": (line.get("Product") or {}).get("Name")}
    return kept


async def settle_cart(event: Event, now: float, carts: Carts) -> None:
    """Apply the event to the visitor's cart. A removal's line is filled in from the cart (the
    call itself names only the line ID), so it must run before the event is released."""
    visitor = event.visitor
    if not visitor:
        return
    if event.previous_visitor:
        await carts.move(event.previous_visitor, visitor)
    if event.type in _LINES:
        line = event.data.get("lineitem") or {}
        removed = event.removes_line
        before = await carts.change(
            visitor,
            cart_line(line),
            removed=removed,
            order_id=event.data.get("order_id"),
            anonymous=event.anonymous,
            browser_id=event.browser_id,
            now=now,
        )
        if removed and before:
            event.data["lineitem"] = {**before, **{k: v for k, v in line.items() if v}}
    elif event.type in (ev.ORDER_SUBMITTED, ev.CART_CLEARED):
        await carts.close(visitor)


async def settle_conversion(event: Event, exposures: Exposures) -> None:
    """A submitted order counts for every experiment variant its visitor saw before it."""
    if event.type != ev.ORDER_SUBMITTED or not event.visitor:
        return
    order = event.data.get("order") or {}
    order_id = order.get("ID") or event.data.get("order_id")
    if order_id:
        total = float(order.get("Total") or 0)
        await exposures.convert(event.visitor, str(order_id), total, event.occurred_at)


def profile_change(event: Event, now: float, earlier: Profile | None) -> Change | None:
    """What the event teaches its visitor's profile, as a change the profile store applies
    atomically; None for events that teach nothing. `earlier` is the anonymous visitor's
    profile a new registered one starts from (a login or transfer)."""
    visitor = event.visitor
    if not visitor or event.type in (ev.DECISION_EXPOSED, ev.CART_ABANDONED):
        return None

    def change(profile: Profile | None) -> Profile:
        if profile is None:
            profile = Profile(visitor_id=visitor, first_seen=now)
            if earlier is not None:
                profile.viewed_products = list(earlier.viewed_products)
                profile.viewed_categories = list(earlier.viewed_categories)
                profile.cart_products = list(earlier.cart_products)
                profile.cart_value = earlier.cart_value
                profile.first_seen = earlier.first_seen or now
        learn(profile, event, now)
        return profile

    return change


def chained(changes: list[Change]) -> Change:
    """Several changes applied in order, as one: one read-modify-write for all of them."""

    def apply(profile: Profile | None) -> Profile | None:
        for change in changes:
            profile = change(profile) or profile
        return profile

    return apply


def learn(profile: Profile, event: Event, now: float) -> None:
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
    if event.type == ev.IDENTIFIED:
        profile.identified_at = max(profile.identified_at, event.occurred_at)
    if event.type == ev.IDENTIFIED and data.get("history"):
        # OrderCloud's own history counts; orders the gateway saw are part of it.
        profile.orders = max(profile.orders, int(data["history"].get("orders") or 0))
        profile.spent = max(profile.spent, float(data["history"].get("spent") or 0))
    elif event.type == ev.PRODUCT_VIEWED:
        pid = (data.get("product") or {}).get("ID")
        if pid:
            views = [p for p in profile.viewed_products if p != pid] + [str(pid)]
            profile.viewed_products = views[-KEPT_VIEWS:]
        for category in data.get("categories") or []:
            kept = [c for c in profile.viewed_categories if c != category] + [str(category)]
            profile.viewed_categories = kept[-KEPT_VIEWS:]
    elif event.type in (ev.LINE_ADDED, ev.LINE_UPDATED, ev.LINE_REMOVED):
        pid = (data.get("lineitem") or {}).get("ProductID")
        if event.removes_line:
            profile.cart_products = [p for p in profile.cart_products if p != pid]
        elif pid and pid not in profile.cart_products:
            profile.cart_products.append(str(pid))
        subtotal = (data.get("order") or {}).get("Subtotal")
        if subtotal is not None:
            profile.cart_value = float(subtotal)
    elif event.type in (ev.CART_CLEARED, ev.ORDER_SUBMITTED):
        if event.type == ev.ORDER_SUBMITTED:
            profile.orders += 1
            profile.spent += float((data.get("order") or {}).get("Total") or 0)
        profile.cart_products, profile.cart_value = [], 0.0
