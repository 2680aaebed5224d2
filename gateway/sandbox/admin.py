"""The seller side the admin client's tokens reach: every buyer's submitted orders and their lines.

A seller receives an order once the buyer submits it, so `Incoming` and `All` list submitted
orders only; the seller places no orders, so `Outgoing` is empty. `from`/`to` bound DateSubmitted.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import listing
from .errors import ApiError, not_found
from .orders import OrderRecord

if TYPE_CHECKING:
    from .app import Sandbox

_DIRECTION = r"(incoming|outgoing|all)"
_ID = r"([^/]+)"


def _query(request: Request) -> str:
    return request.scope.get("query_string", b"").decode("latin-1")


def _incoming(sandbox: Sandbox, direction: str) -> list[dict[str, Any]]:
    if direction == "outgoing":
        return []
    return [record.order for record in sandbox.orders.submitted()]


async def list_orders(sandbox: Sandbox, request: Request, direction: str) -> Response:
    args = listing.parse(_query(request), ("from", "to", "buyerid", "supplierid"))
    if args.params.get("from"):
        args.filters.append(("DateSubmitted", ">=" + args.params["from"]))
    if args.params.get("to"):
        args.filters.append(("DateSubmitted", "<=" + args.params["to"]))
    if args.params.get("buyerid"):
        args.filters.append(("FromCompanyID", args.params["buyerid"]))
    if not args.sort_by and not args.search:
        args.sort_by = ["!DateSubmitted"]
    page = listing.page_of(_incoming(sandbox, direction), args, ("ID", "Comments"))
    return JSONResponse(page)


async def list_lines(sandbox: Sandbox, request: Request, direction: str, order_id: str) -> Response:
    record: OrderRecord | None = sandbox.orders.find(order_id)
    if record is None or not record.order["IsSubmitted"] or direction == "outgoing":
        raise not_found("Order", order_id)
    args = listing.parse(_query(request))
    lines = list(record.lines.values())
    return JSONResponse(listing.page_of(lines, args, ("ID", "ProductID", "Product.Name")))


Handler = Callable[..., Awaitable[Response]]
_ROUTES: list[tuple[str, re.Pattern[str], Handler]] = [
    ("GET", re.compile(rf"/v1/orders/{_DIRECTION}/?", re.IGNORECASE), list_orders),
    (
        "GET",
        re.compile(rf"/v1/orders/{_DIRECTION}/{_ID}/lineitems/?", re.IGNORECASE),
        list_lines,
    ),
]


def is_admin(claims: dict[str, Any] | None) -> bool:
    """Whether verified token claims are the admin client's (a seller token, no user)."""
    return bool(claims) and claims.get("usrtype") == "admin"


async def dispatch(sandbox: Sandbox, request: Request, path: str, method: str) -> Response:
    """Answer an admin-token call; anything outside the admin routes is 403, as a token without
    the needed roles gets from OrderCloud."""
    for route_method, pattern, handler in _ROUTES:
        match = pattern.fullmatch(path)
        if match is not None and route_method == method:
            ids = [unquote(group) for group in match.groups()]
            return await handler(sandbox, request, ids[0].lower(), *ids[1:])
    raise ApiError(
        403,
        "InsufficientRoles",
        "The sandbox's admin client may only list submitted orders and their line items.",
    )
