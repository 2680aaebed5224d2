"""From one proxied OrderCloud call to canonical events: a pure function, no I/O.

Whatever needs the network (the user behind a new token, all line items of an order, products)
is added later by `hydrate`; this module only reads the call, its request body and its response.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl

import jwt
import orjson

from gateway import operations as ops
from gateway.call import Call
from gateway.headers import browser_id, user_agent
from gateway.identity import anonymous_visitor_id
from state import events as ev
from state.events import Event
from state.exposures import Exposure
from tracking.privacy import scrub

TRACKED_KINDS = frozenset(
    {
        ops.TOKEN,
        ops.REGISTER,
        ops.TRANSFER,
        ops.PRODUCT_GET,
        ops.PRODUCTS_LIST,
        ops.LINEITEM_CREATE,
        ops.LINEITEM_UPDATE,
        ops.LINEITEM_DELETE,
        ops.ORDER_DELETE,
        ops.ORDER_SUBMIT,
    }
)
_SEARCH_RESULTS_KEPT = 20


def events_for(
    call: Call, status: int, body: bytes, *, client_key: str | None = None
) -> list[Event]:
    """The events one call produces; none unless the upstream answered 2xx."""
    if not 200 <= status < 300 or call.operation.kind not in TRACKED_KINDS:
        return []
    kind = call.operation.kind
    ids = call.operation.ids
    answer = _json(body)
    visitor = call.visitor
    headers = _headers(call)

    def event(type_: str, **data: Any) -> Event:
        return Event(
            type=type_,
            visitor=visitor.id if visitor else None,
            anonymous=visitor.anonymous if visitor else True,
            occurred_at=call.received_at,
            browser_id=browser_id(headers, client_key),
            context=_context(call, headers),
            data=scrub(data),
            key=call.shopper or (visitor.key if visitor else None),
            client=call.client_id or (visitor.client_id if visitor else None),
        )

    if kind == ops.TOKEN:
        form = dict(parse_qsl(call.body.decode("utf-8", "replace")))
        if form.get("grant_type") != "password" or not isinstance(answer, dict):
            return []
        identified = event(ev.IDENTIFIED, method="login", username=form.get("username"))
        # No token came in: the storefront is the API client the login named (OrderCloud
        # refuses a login for a client that does not exist).
        identified.client = (form.get("client_id") or "")[:256] or identified.client
        identified.visitor, identified.anonymous = None, False
        identified.key = _user_key(form.get("username"))
        if visitor and visitor.anonymous:
            identified.previous_visitor = visitor.id
        return [identified]
    if kind in (ops.REGISTER, ops.TRANSFER):
        previous = anonymous_visitor(call.query) or (
            visitor.id if visitor and visitor.anonymous else None
        )
        if kind == ops.REGISTER:
            user = _json(call.body)
            identified = event(ev.IDENTIFIED, method="register", user=user)
            identified.visitor = None  # the new user; known once the new token is hydrated
            identified.key = _user_key(user.get("Username") if isinstance(user, dict) else None)
        else:
            identified = event(ev.IDENTIFIED, method="transfer")
        identified.anonymous = False
        identified.previous_visitor = previous
        return [identified]
    if kind == ops.PRODUCT_GET:
        product = answer if isinstance(answer, dict) else {"ID": ids.get("product")}
        return [event(ev.PRODUCT_VIEWED, product=product)]
    if kind == ops.PRODUCTS_LIST:
        params = {k.lower(): v for k, v in parse_qsl(call.query, keep_blank_values=True)}
        term = params.get("search", "").strip()
        if not term:
            return []
        items = answer.get("Items") if isinstance(answer, dict) else None
        meta = answer.get("Meta") if isinstance(answer, dict) else None
        found = [i.get("ID") for i in (items or [])[:_SEARCH_RESULTS_KEPT] if isinstance(i, dict)]
        return [
            event(
                ev.PRODUCTS_SEARCHED,
                search=term,
                category=params.get("categoryid"),
                total=(meta or {}).get("TotalCount", len(found)),
                products=found,
            )
        ]
    where = {
        "order_id": ids.get("order"),
        "direction": ids.get("direction"),
        "cart": call.operation.cart,
    }
    if kind in (ops.LINEITEM_CREATE, ops.LINEITEM_UPDATE):
        type_ = ev.LINE_ADDED if kind == ops.LINEITEM_CREATE else ev.LINE_UPDATED
        return [event(type_, lineitem=answer if isinstance(answer, dict) else {}, **where)]
    if kind == ops.LINEITEM_DELETE:
        return [event(ev.LINE_REMOVED, lineitem={"ID": ids.get("lineitem")}, **where)]
    if kind == ops.ORDER_DELETE:
        return [event(ev.CART_CLEARED, **where)]
    # ORDER_SUBMIT
    order = answer if isinstance(answer, dict) else {}
    where["order_id"] = where["order_id"] or order.get("ID")
    return [event(ev.ORDER_SUBMITTED, order=order, **where)]


def _user_key(username: object) -> str | None:
    """The ordering key a registered user's later tokens will carry (`user:{usr}`)."""
    return f"user:{username[:256]}" if isinstance(username, str) and username else None


def exposure_events(call: Call, exposures: Sequence[Exposure]) -> list[Event]:
    """One event per exposure of a decision the shopper saw: which table, rule and variant."""
    visitor = call.visitor
    return [
        Event(
            type=ev.DECISION_EXPOSED,
            visitor=e.visitor,
            occurred_at=e.at,
            anonymous=visitor.anonymous if visitor else e.visitor.startswith("anon-"),
            key=call.shopper or (visitor.key if visitor else None),
            client=call.client_id or (visitor.client_id if visitor else None),
            context={"request_id": call.request_id} if call.request_id else {},
            data={"table": e.table, "rule": e.rule, "variant": e.variant, "version": e.version},
        )
        for e in exposures
    ]


def anonymous_visitor(query: str) -> str | None:
    """`anon-{orderid}` from the `anonUserToken` query parameter, read but never kept.

    The signature is not checked: the gateway only needs a stitching hint, OrderCloud itself
    decides whether the transfer is allowed.
    """
    for key, value in parse_qsl(query):
        if key.lower() == "anonusertoken" and value:
            try:
                claims = jwt.decode(value, options={"verify_signature": False})
            except jwt.PyJWTError:
                return None
            return anonymous_visitor_id(claims) if isinstance(claims, dict) else None
    return None


_WANTED = frozenset({b"referer", b"origin", b"user-agent", b"x-browser-id", b"cookie"})


def _headers(call: Call) -> dict[str, str]:
    """The few request headers tracking reads, in one pass (cookies joined)."""
    found: dict[str, str] = {}
    for name, value in call.headers.raw:
        name = name.lower()
        if name in _WANTED:
            key = name.decode("latin-1")
            text = value.decode("latin-1")
            found[key] = f"{found[key]}; {text}" if key in found else text
    return found


def bearer_from_answer(body: bytes) -> str | None:
    """The access token OrderCloud just issued (login, register): for hydration only, never kept."""
    answer = _json(body)
    token = answer.get("access_token") if isinstance(answer, dict) else None
    return token if isinstance(token, str) and token else None


def _context(call: Call, headers: dict[str, str]) -> dict[str, Any]:
    referrer = headers.get("referer")
    origin = headers.get("origin")
    if referrer:
        referrer = scrub(referrer)  # a storefront URL may carry a token in its query
        if not origin and "://" in referrer:
            scheme, _, rest = referrer.partition("://")
            origin = f"{scheme}://{rest.split('/', 1)[0]}"
    visitor = call.visitor
    context = {
        "ip": call.client,
        "user_agent": user_agent(headers) or None,
        "referrer": referrer,
        "origin": origin,
        "language": visitor.language if visitor else None,
        "currency": visitor.currency if visitor else None,
        "email": visitor.email if visitor else None,
        "request_id": call.request_id,
    }
    return {k: v for k, v in context.items() if v}


def _json(body: bytes) -> Any:
    if not body:
        return None
    try:
        return orjson.loads(body.removeprefix(b"\xef\xbb\xbf"))
    except (ValueError, UnicodeDecodeError):
        return None
