"""Which OrderCloud operation a request is.

Tracking and decisions only need to know *what* a call does, never OrderCloud's URL shapes, so
recognition lives here as one table of patterns. Matching is case-insensitive on the decoded
path (the SDK mixes `trackingEvents`/`TrackingEvents`, `Outgoing`/`outgoing`); captured IDs keep
their case.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

# Operation kinds. Tracking maps these to events; decisions rewrite the *.list ones.
TOKEN = "auth.token"
REGISTER = "me.register"
TRANSFER = "me.transfer"
ME = "me.get"
PRODUCTS_LIST = "products.list"
PRODUCT_GET = "product.get"
PROMOTIONS_LIST = "promotions.list"
CATEGORIES_LIST = "categories.list"
LINEITEM_CREATE = "lineitem.create"
LINEITEM_UPDATE = "lineitem.update"
LINEITEM_DELETE = "lineitem.delete"
ORDER_DELETE = "order.delete"
ORDER_SUBMIT = "order.submit"

LIST_KINDS = frozenset({PRODUCTS_LIST, PROMOTIONS_LIST, CATEGORIES_LIST})


@dataclass(frozen=True, slots=True)
class Operation:
    """A recognised OrderCloud call.

    `ids` holds what the path names: `direction`, `order`, `lineitem`, `product` (decoded).
    `cart` is true for the `/v1/cart...` routes, where the order is the shopper's current cart
    and has no ID in the path.
    """

    kind: str
    ids: dict[str, str] = field(default_factory=dict)
    cart: bool = False
    route: str = ""  # the route template, e.g. /v1/me/products/{product}: a bounded metric label

    @property
    def is_list(self) -> bool:
        return self.kind in LIST_KINDS


_SEG = r"([^/]+)"
_ORDER = rf"/v1/orders/{_SEG}/{_SEG}"
_LINE = rf"/lineitems/{_SEG}"

# (method, pattern, kind, group names, cart). Literal cart routes come before templated ones.
_ROUTES: list[tuple[str, str, str, tuple[str, ...], bool]] = [
    ("POST", r"/oauth/token", TOKEN, (), False),
    ("PUT", r"/v1/me/register", REGISTER, (), False),
    ("PUT", r"/v1/me/orders", TRANSFER, (), False),
    ("GET", r"/v1/me", ME, (), False),
    ("GET", r"/v1/me/products", PRODUCTS_LIST, (), False),
    ("GET", rf"/v1/me/products/{_SEG}", PRODUCT_GET, ("product",), False),
    ("GET", r"/v1/me/promotions", PROMOTIONS_LIST, (), False),
    ("GET", r"/v1/me/categories", CATEGORIES_LIST, (), False),
    ("POST", r"/v1/cart/lineitems", LINEITEM_CREATE, (), True),
    ("PUT", rf"/v1/cart{_LINE}", LINEITEM_UPDATE, ("lineitem",), True),
    ("PATCH", rf"/v1/cart{_LINE}", LINEITEM_UPDATE, ("lineitem",), True),
    ("DELETE", rf"/v1/cart{_LINE}", LINEITEM_DELETE, ("lineitem",), True),
    ("POST", r"/v1/cart/submit", ORDER_SUBMIT, (), True),
    ("DELETE", r"/v1/cart", ORDER_DELETE, (), True),
    ("POST", rf"{_ORDER}/lineitems", LINEITEM_CREATE, ("direction", "order"), False),
    ("PUT", rf"{_ORDER}{_LINE}", LINEITEM_UPDATE, ("direction", "order", "lineitem"), False),
    ("PATCH", rf"{_ORDER}{_LINE}", LINEITEM_UPDATE, ("direction", "order", "lineitem"), False),
    ("DELETE", rf"{_ORDER}{_LINE}", LINEITEM_DELETE, ("direction", "order", "lineitem"), False),
    ("POST", rf"{_ORDER}/submit", ORDER_SUBMIT, ("direction", "order"), False),
    ("DELETE", _ORDER, ORDER_DELETE, ("direction", "order"), False),
]


def _template(pattern: str, names: tuple[str, ...]) -> str:
    """`/v1/me/products/([^/]+)` with names ("product",) -> `/v1/me/products/{product}`."""
    parts = pattern.split(_SEG)
    return parts[0] + "".join(f"{{{n}}}{rest}" for n, rest in zip(names, parts[1:], strict=True))


_COMPILED: dict[str, list[tuple[re.Pattern[str], str, tuple[str, ...], bool, str]]] = {}
for _method, _pattern, _kind, _names, _cart in _ROUTES:
    _COMPILED.setdefault(_method, []).append(
        (
            re.compile(_pattern + "/?", re.IGNORECASE),
            _kind,
            _names,
            _cart,
            _template(_pattern, _names),
        )
    )


def recognise(method: str, raw_path: str) -> Operation | None:
    """Return the operation for `method` + raw (still percent-encoded) path, or None."""
    candidates = _COMPILED.get(method.upper())
    if not candidates:
        return None
    for pattern, kind, names, cart, route in candidates:
        match = pattern.fullmatch(raw_path)
        if match is None:
            continue
        # Matched on the raw path, so an encoded "/" stays inside one ID; decode only the IDs.
        ids = {n: unquote(v) for n, v in zip(names, match.groups())}
        return Operation(kind, ids, cart, route)
    return None
