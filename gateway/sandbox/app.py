"""The sandbox's HTTP surface: OrderCloud's routes, matched case-insensitively, with OC errors.

Starlette's router is case-sensitive, so one catch-all route hands every request to `dispatch`,
which matches the raw path against this module's table (IDs keep their case and are decoded once).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import admin, listing
from .assortment import Assortment
from .errors import ApiError, invalid, not_found
from .oauth import OAuth
from .orders import OrderBook, OrderRecord
from .tokens import Signer
from .users import Directory, Shopper


@dataclass(slots=True)
class Sandbox:
    """Everything one sandbox app holds; nothing is shared between apps."""

    base_url: str | None
    signer: Signer
    directory: Directory
    oauth: OAuth
    assortment: Assortment
    orders: OrderBook

    def audience(self, request: Request) -> str:
        return self.base_url or str(request.base_url).rstrip("/")

    def shopper(self, token: str | None) -> Shopper | None:
        claims = self.signer.verify(token) if token else None
        if claims is None:
            return None
        user = self.directory.by_internal_id(str(claims.get("u")))
        return Shopper(user, claims) if user is not None else None


def _new_sandbox(base_url: str | None) -> Sandbox:
    signer, directory, assortment = Signer(), Directory(), Assortment()
    orders = OrderBook(directory, assortment.products)
    orders.seed_history(datetime.now(UTC))
    return Sandbox(
        base_url.rstrip("/") if base_url else None,
        signer,
        directory,
        OAuth(signer, directory),
        assortment,
        orders,
    )


# Request plumbing ---------------------------------------------------------------------------


def _ok(data: Any, status: int = 200) -> Response:
    return JSONResponse(data, status)


def _no_content() -> Response:
    return Response(status_code=204)


async def _body(request: Request) -> dict[str, Any]:
    """The JSON object in the body; an empty body is `{}` (the SDK sends empty writes)."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError):
        raise invalid("The request body is not valid JSON.", "Request.InvalidRequestBody") from None
    if not isinstance(data, dict):
        raise invalid("The request body must be a JSON object.", "Request.InvalidRequestBody")
    return data


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def _query(request: Request) -> str:
    return request.scope.get("query_string", b"").decode("latin-1")


def _anonymous_shopper(sandbox: Sandbox, request: Request) -> Shopper:
    """The anonymous shopper named by `?anonUserToken=`, which must be a valid anonymous token."""
    token = next((v for k, v in parse_qsl(_query(request)) if k.lower() == "anonusertoken"), None)
    if not token:
        raise ApiError(400, "Auth.MustPassAnonUserToken", "anonUserToken is required.")
    anonymous = sandbox.shopper(token)
    if anonymous is None or anonymous.anonymous_order_id is None:
        raise ApiError(400, "InvalidToken", "anonUserToken is not a valid anonymous access token.")
    return anonymous


Handler = Callable[..., Awaitable[Response]]


# OAuth --------------------------------------------------------------------------------------


async def token(sandbox: Sandbox, request: Request, _: Shopper | None) -> Response:
    raw = (await request.body()).decode("utf-8-sig", errors="replace")
    form = dict(parse_qsl(raw, keep_blank_values=True))
    return _ok(sandbox.oauth.grant(form, sandbox.audience(request)))


async def certificate(sandbox: Sandbox, request: Request, _: Shopper | None, kid: str) -> Response:
    if kid != sandbox.signer.kid:
        raise not_found("PublicKey", kid)
    return _ok(sandbox.signer.jwk())


# Me -----------------------------------------------------------------------------------------


async def me(sandbox: Sandbox, request: Request, shopper: Shopper) -> Response:
    return _ok(sandbox.directory.me_user(shopper.user))


async def register(sandbox: Sandbox, request: Request, shopper: Shopper) -> Response:
    anonymous = _anonymous_shopper(sandbox, request)
    user = sandbox.directory.register(anonymous.user.buyer_id, await _body(request))
    registered = Shopper(user, {})
    sandbox.orders.transfer(anonymous.owner, registered)
    cid = str(anonymous.claims.get("cid", ""))
    return _ok(sandbox.oauth.issue(user, cid, sandbox.audience(request)))


async def transfer(sandbox: Sandbox, request: Request, shopper: Shopper) -> Response:
    anonymous = _anonymous_shopper(sandbox, request)
    if shopper.anonymous_order_id is not None:
        raise ApiError(
            400,
            "Auth.AnonUserProhibited",
            "Only a registered user can take over an anonymous user's order.",
        )
    sandbox.orders.transfer(anonymous.owner, shopper)
    return _no_content()


async def my_orders(sandbox: Sandbox, request: Request, shopper: Shopper) -> Response:
    return _ok(_order_page(sandbox, request, shopper))


def _order_page(sandbox: Sandbox, request: Request, shopper: Shopper) -> dict[str, Any]:
    args = listing.parse(_query(request), ("from", "to", "buyerid", "supplierid"))
    if args.params.get("from"):
        args.filters.append(("DateCreated", ">=" + args.params["from"]))
    if args.params.get("to"):
        args.filters.append(("DateCreated", "<=" + args.params["to"]))
    if not args.sort_by and not args.search:
        args.sort_by = ["!DateCreated"]
    orders = [record.order for record in sandbox.orders.owned(shopper)]
    return listing.page_of(orders, args, ("ID", "Comments"))


async def products(sandbox: Sandbox, request: Request, shopper: Shopper) -> Response:
    args = listing.parse(_query(request), ("catalogid", "categoryid", "depth", "sellerid"))
    shelf = sandbox.assortment
    shelf.check_catalog(args.params.get("catalogid"))
    items = list(shelf.products[shopper.user.buyer_id].values())
    category_id = args.params.get("categoryid")
    if category_id:
        wanted = shelf.products_in(category_id, args.params.get("depth"))
        items = [item for item in items if item["ID"] in wanted]
    page = listing.page_of(items, args, facets=True)
    # Encoding products dominates this hot route; join the pre-encoded ones instead.
    encoded = shelf.product_json[shopper.user.buyer_id]
    meta = json.dumps(page["Meta"], separators=(",", ":")).encode()
    body = b",".join(encoded[item["ID"]] for item in page["Items"])
    return Response(
        b'{"Meta":' + meta + b',"Items":[' + body + b"]}", media_type="application/json"
    )


async def product(
    sandbox: Sandbox, request: Request, shopper: Shopper, product_id: str
) -> Response:
    item = sandbox.assortment.products[shopper.user.buyer_id].get(product_id)
    if item is None:
        raise not_found("Product", product_id)
    return _ok(item)


async def promotions(sandbox: Sandbox, request: Request, shopper: Shopper) -> Response:
    args = listing.parse(_query(request))
    return _ok(
        listing.page_of(sandbox.assortment.promotions, args, ("ID", "Name", "Description", "Code"))
    )


async def promotion(
    sandbox: Sandbox, request: Request, shopper: Shopper, promotion_id: str
) -> Response:
    item = sandbox.assortment.promotion.get(promotion_id)
    if item is None:
        raise not_found("Promotion", promotion_id)
    return _ok(item)


async def categories(sandbox: Sandbox, request: Request, shopper: Shopper) -> Response:
    args = listing.parse(_query(request), ("depth", "catalogid", "productid"))
    shelf = sandbox.assortment
    shelf.check_catalog(args.params.get("catalogid"))
    parents = [value for key, value in args.filters if key.lower() == "parentid"]
    items = shelf.visible_categories(
        args.params.get("depth"),
        parents[0] if len(parents) == 1 else None,
        args.params.get("productid"),
    )
    return _ok(listing.page_of(items, args))


async def category(
    sandbox: Sandbox, request: Request, shopper: Shopper, category_id: str
) -> Response:
    shelf = sandbox.assortment
    shelf.check_catalog(
        next((v for k, v in parse_qsl(_query(request)) if k.lower() == "catalogid"), None)
    )
    item = shelf.category.get(category_id)
    if item is None:
        raise not_found("Category", category_id)
    return _ok(item)


# Orders -------------------------------------------------------------------------------------


async def list_orders(
    sandbox: Sandbox, request: Request, shopper: Shopper, direction: str
) -> Response:
    if direction == "incoming":
        return _ok(
            listing.page_of(
                [], listing.parse(_query(request), ("from", "to", "buyerid", "supplierid"))
            )
        )
    return _ok(_order_page(sandbox, request, shopper))


async def create_order(
    sandbox: Sandbox, request: Request, shopper: Shopper, direction: str
) -> Response:
    if direction == "incoming":
        raise invalid("A buyer can only create outgoing orders.", data={"Parameter": "direction"})
    return _ok(sandbox.orders.create(shopper, await _body(request)).order, 201)


async def get_order(
    sandbox: Sandbox, request: Request, shopper: Shopper, direction: str, order_id: str
) -> Response:
    return _ok(sandbox.orders.get(shopper, order_id, direction).order)


async def patch_order(
    sandbox: Sandbox, request: Request, shopper: Shopper, direction: str, order_id: str
) -> Response:
    record = sandbox.orders.get(shopper, order_id, direction)
    sandbox.orders.patch(record, await _body(request))
    return _ok(record.order)


async def delete_order(
    sandbox: Sandbox, request: Request, shopper: Shopper, direction: str, order_id: str
) -> Response:
    sandbox.orders.delete(sandbox.orders.get(shopper, order_id, direction))
    return _no_content()


async def submit_order(
    sandbox: Sandbox, request: Request, shopper: Shopper, direction: str, order_id: str
) -> Response:
    record = sandbox.orders.get(shopper, order_id, direction)
    await _body(request)
    sandbox.orders.submit(record)
    return _ok(record.order, 201)


def _line_page(request: Request, record: OrderRecord | None) -> dict[str, Any]:
    args = listing.parse(_query(request))
    lines = list(record.lines.values()) if record else []
    return listing.page_of(lines, args, ("ID", "ProductID", "Product.Name"))


async def list_lines(
    sandbox: Sandbox, request: Request, shopper: Shopper, direction: str, order_id: str
) -> Response:
    return _ok(_line_page(request, sandbox.orders.get(shopper, order_id, direction)))


async def create_line(
    sandbox: Sandbox, request: Request, shopper: Shopper, direction: str, order_id: str
) -> Response:
    body = await _body(request)
    record = sandbox.orders.get_or_start(shopper, order_id, direction)
    return _ok(sandbox.orders.add_line(record, body), 201)


async def get_line(
    sandbox: Sandbox,
    request: Request,
    shopper: Shopper,
    direction: str,
    order_id: str,
    line_id: str,
) -> Response:
    record = sandbox.orders.get(shopper, order_id, direction)
    return _ok(sandbox.orders.line(record, line_id))


async def save_line(
    sandbox: Sandbox,
    request: Request,
    shopper: Shopper,
    direction: str,
    order_id: str,
    line_id: str,
) -> Response:
    body = await _body(request)
    record = sandbox.orders.get_or_start(shopper, order_id, direction)
    return _ok(sandbox.orders.save_line(record, line_id, body))


async def patch_line(
    sandbox: Sandbox,
    request: Request,
    shopper: Shopper,
    direction: str,
    order_id: str,
    line_id: str,
) -> Response:
    body = await _body(request)
    record = sandbox.orders.get(shopper, order_id, direction)
    return _ok(sandbox.orders.patch_line(record, line_id, body))


async def delete_line(
    sandbox: Sandbox,
    request: Request,
    shopper: Shopper,
    direction: str,
    order_id: str,
    line_id: str,
) -> Response:
    sandbox.orders.delete_line(sandbox.orders.get(shopper, order_id, direction), line_id)
    return _no_content()


# Cart: the shopper's current unsubmitted order ----------------------------------------------


def _cart(sandbox: Sandbox, shopper: Shopper, line_id: str) -> OrderRecord:
    record = sandbox.orders.cart(shopper)
    if record is None:
        raise not_found("LineItem", line_id)
    return record


async def get_cart(sandbox: Sandbox, request: Request, shopper: Shopper) -> Response:
    record = sandbox.orders.cart(shopper)
    return _ok(record.order if record else sandbox.orders.empty_cart(shopper))


async def delete_cart(sandbox: Sandbox, request: Request, shopper: Shopper) -> Response:
    record = sandbox.orders.cart(shopper)
    if record is not None:
        sandbox.orders.delete(record)
    return _no_content()


async def cart_lines(sandbox: Sandbox, request: Request, shopper: Shopper) -> Response:
    return _ok(_line_page(request, sandbox.orders.cart(shopper)))


async def cart_add_line(sandbox: Sandbox, request: Request, shopper: Shopper) -> Response:
    body = await _body(request)
    return _ok(sandbox.orders.add_line(sandbox.orders.cart_or_start(shopper), body), 201)


async def cart_line(sandbox: Sandbox, request: Request, shopper: Shopper, line_id: str) -> Response:
    return _ok(sandbox.orders.line(_cart(sandbox, shopper, line_id), line_id))


async def cart_save_line(
    sandbox: Sandbox, request: Request, shopper: Shopper, line_id: str
) -> Response:
    body = await _body(request)
    return _ok(sandbox.orders.save_line(sandbox.orders.cart_or_start(shopper), line_id, body))


async def cart_patch_line(
    sandbox: Sandbox, request: Request, shopper: Shopper, line_id: str
) -> Response:
    body = await _body(request)
    return _ok(sandbox.orders.patch_line(_cart(sandbox, shopper, line_id), line_id, body))


async def cart_delete_line(
    sandbox: Sandbox, request: Request, shopper: Shopper, line_id: str
) -> Response:
    sandbox.orders.delete_line(_cart(sandbox, shopper, line_id), line_id)
    return _no_content()


async def cart_submit(sandbox: Sandbox, request: Request, shopper: Shopper) -> Response:
    await _body(request)
    record = sandbox.orders.cart(shopper)
    if record is None:
        raise ApiError(
            400,
            "Order.CannotSubmitWithNoLineItems",
            "Order must have at least one line item to be submitted.",
        )
    sandbox.orders.submit(record)
    return _ok(record.order, 201)


# Routing ------------------------------------------------------------------------------------

_ID = r"([^/]+)"
_DIRECTION = r"(incoming|outgoing|all)"
_ORDER = rf"/v1/orders/{_DIRECTION}/{_ID}"
_CART_LINE = rf"/v1/cart/lineitems/{_ID}"

# (method, path pattern, handler, needs a bearer token). Literal segments before templates.
_TABLE: list[tuple[str, str, Handler, bool]] = [
    ("POST", r"/oauth/token", token, False),
    ("GET", rf"/oauth/certs/{_ID}", certificate, False),
    ("GET", r"/v1/me", me, True),
    ("PUT", r"/v1/me/register", register, True),
    ("PUT", r"/v1/me/orders", transfer, True),
    ("GET", r"/v1/me/orders", my_orders, True),
    ("GET", r"/v1/me/products", products, True),
    ("GET", rf"/v1/me/products/{_ID}", product, True),
    ("GET", r"/v1/me/promotions", promotions, True),
    ("GET", rf"/v1/me/promotions/{_ID}", promotion, True),
    ("GET", r"/v1/me/categories", categories, True),
    ("GET", rf"/v1/me/categories/{_ID}", category, True),
    ("GET", rf"/v1/orders/{_DIRECTION}", list_orders, True),
    ("POST", rf"/v1/orders/{_DIRECTION}", create_order, True),
    ("GET", _ORDER, get_order, True),
    ("PATCH", _ORDER, patch_order, True),
    ("DELETE", _ORDER, delete_order, True),
    ("POST", rf"{_ORDER}/submit", submit_order, True),
    ("GET", rf"{_ORDER}/lineitems", list_lines, True),
    ("POST", rf"{_ORDER}/lineitems", create_line, True),
    ("GET", rf"{_ORDER}/lineitems/{_ID}", get_line, True),
    ("PUT", rf"{_ORDER}/lineitems/{_ID}", save_line, True),
    ("PATCH", rf"{_ORDER}/lineitems/{_ID}", patch_line, True),
    ("DELETE", rf"{_ORDER}/lineitems/{_ID}", delete_line, True),
    ("GET", r"/v1/cart", get_cart, True),
    ("DELETE", r"/v1/cart", delete_cart, True),
    ("GET", r"/v1/cart/lineitems", cart_lines, True),
    ("POST", r"/v1/cart/lineitems", cart_add_line, True),
    ("POST", r"/v1/cart/submit", cart_submit, True),
    ("GET", _CART_LINE, cart_line, True),
    ("PUT", _CART_LINE, cart_save_line, True),
    ("PATCH", _CART_LINE, cart_patch_line, True),
    ("DELETE", _CART_LINE, cart_delete_line, True),
]
# The last field says whether the first captured group is an order direction (lower-cased).
_ROUTES = [
    (method, re.compile(pattern + "/?", re.IGNORECASE), handler, auth, _DIRECTION in pattern)
    for method, pattern, handler, auth in _TABLE
]
_INVALID_TOKEN = ApiError(401, "InvalidToken", "Access token is invalid or expired.")


async def dispatch(request: Request) -> Response:
    """Find the route for the raw path (case-insensitively), authenticate, run the handler."""
    sandbox: Sandbox = request.app.state.sandbox
    raw_path = request.scope.get("raw_path") or request.scope["path"].encode()
    path = raw_path.decode("latin-1")
    method = "GET" if request.method == "HEAD" else request.method
    allowed: list[str] = []
    try:
        bearer = _bearer(request)
        if bearer and path.lower().startswith("/v1/"):
            if admin.is_admin(sandbox.signer.verify(bearer)):
                return await admin.dispatch(sandbox, request, path, method)
        for route_method, pattern, handler, auth, directed in _ROUTES:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if route_method != method:
                allowed.append(route_method)
                continue
            shopper = sandbox.shopper(_bearer(request)) if auth else None
            if auth and shopper is None:
                raise _INVALID_TOKEN
            ids = [unquote(group) for group in match.groups()]
            if directed:
                ids[0] = ids[0].lower()
            return await handler(sandbox, request, shopper, *ids)
        if allowed:
            raise ApiError(
                405,
                "MethodNotAllowed",
                f"{method} is not allowed on {unquote(path)}.",
                {"Allowed": allowed},
            )
        raise ApiError(
            404,
            "NotFound",
            f"Route not found: {unquote(path)}",
            {"ObjectType": "Route", "ObjectID": unquote(path)},
        )
    except ApiError as error:
        return JSONResponse(error.body(), error.status)


def create_app(base_url: str | None = None) -> Starlette:
    """A fresh, seeded, in-memory OrderCloud sandbox.

    `base_url` is what tokens carry in `aud` (e.g. "http://127.0.0.1:8123"); None uses the base
    URL each token request arrived at.
    """
    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    app = Starlette(routes=[Route("/{path:path}", dispatch, methods=methods)])
    app.state.sandbox = _new_sandbox(base_url)
    return app


def serve(host: str, port: int) -> None:
    """Run a sandbox until interrupted (`ocgateway sandbox --host --port`)."""
    import uvicorn

    # No access log: anonUserToken travels in query strings.
    uvicorn.run(create_app(), host=host, port=port, log_level="warning", access_log=False)
