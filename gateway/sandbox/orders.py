"""Orders and their line items, with totals kept in step on every change.

Ownership is explicit: each order belongs to one anonymous session (`anon:{orderid}`) or one
registered user (`user:{buyer}:{id}`), and a shopper sees only their own orders; anything else is
NotFound, as in OrderCloud. An anonymous token's `orderid` names the order it will get: the order
is created on first use (the first line item), and transfer hands it to a registered user.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .catalog import ORDER_HISTORY, SELLER_ID, iso
from .errors import ApiError, invalid, not_found
from .users import Directory, Shopper

_LINE_FIELDS = (
    "ID",
    "Name",
    "Description",
    "Returnable",
    "QuantityMultiplier",
    "ShipWeight",
    "ShipHeight",
    "ShipWidth",
    "ShipLength",
    "DefaultSupplierID",
    "ParentID",
    "xp",
)


@dataclass(slots=True)
class OrderRecord:
    order: dict[str, Any]
    owner: str
    lines: dict[str, dict[str, Any]] = field(default_factory=dict)  # insertion-ordered


def _now() -> str:
    return iso(datetime.now(UTC))


def _new_id() -> str:
    return secrets.token_urlsafe(16)


def _merge(target: Any, patch: Any) -> Any:
    """PATCH semantics for xp: objects merge key by key, anything else replaces."""
    if not isinstance(target, dict) or not isinstance(patch, dict):
        return patch
    merged = dict(target)
    for key, value in patch.items():
        merged[key] = _merge(merged.get(key), value)
    return merged


def _quantity(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid("Quantity must be a whole number.", data={"Field": "Quantity"})
    if value < 1:
        raise ApiError(
            400,
            "LineItem.QuantityMustBePositive",
            "Quantity must be positive.",
            {"Quantity": value},
        )
    return value


class OrderBook:
    """All orders of one sandbox."""

    def __init__(
        self, directory: Directory, products: dict[str, dict[str, dict[str, Any]]]
    ) -> None:
        self._directory = directory
        self._products = products  # buyer ID -> product ID -> BuyerProduct
        self._records: dict[str, OrderRecord] = {}

    # Orders -------------------------------------------------------------------------------

    def owned(self, shopper: Shopper) -> list[OrderRecord]:
        return [record for record in self._records.values() if record.owner == shopper.owner]

    def submitted(self) -> list[OrderRecord]:
        """Every buyer's submitted orders: what the seller sees as incoming."""
        return [record for record in self._records.values() if record.order["IsSubmitted"]]

    def find(self, order_id: str) -> OrderRecord | None:
        """Any order by ID, whoever owns it (the seller side's view)."""
        return self._records.get(order_id)

    def get(self, shopper: Shopper, order_id: str, direction: str = "outgoing") -> OrderRecord:
        record = self._records.get(order_id)
        if record is None or record.owner != shopper.owner or direction == "incoming":
            raise not_found("Order", order_id)
        return record

    def get_or_start(self, shopper: Shopper, order_id: str, direction: str) -> OrderRecord:
        """Like `get`, but an anonymous shopper's own `orderid` order is created on first use."""
        if order_id == shopper.anonymous_order_id and order_id not in self._records:
            return self.create(shopper, {})
        return self.get(shopper, order_id, direction)

    def create(
        self, shopper: Shopper, body: dict[str, Any], created: str | None = None
    ) -> OrderRecord:
        order_id = body.get("ID")
        if order_id is not None and (not isinstance(order_id, str) or not order_id):
            raise invalid("ID must be a non-empty string.", data={"Field": "ID"})
        if order_id is None:
            anonymous = shopper.anonymous_order_id
            order_id = anonymous if anonymous and anonymous not in self._records else _new_id()
        if order_id in self._records:
            raise ApiError(
                409,
                "IdExists",
                f"Order already exists: {order_id}",
                {"ObjectType": "Order", "ObjectID": order_id},
            )
        user = shopper.user
        moment = created or _now()
        order = {
            "ID": order_id,
            "FromUser": self._directory.order_user(user),
            "FromCompanyID": user.buyer_id,
            "ToCompanyID": SELLER_ID,
            "FromUserID": user.id,
            "BillingAddressID": None,
            "BillingAddress": None,
            "ShippingAddressID": None,
            "Comments": body.get("Comments") if isinstance(body.get("Comments"), str) else None,
            "LineItemCount": 0,
            "Status": "Unsubmitted",
            "DateCreated": moment,
            "DateSubmitted": None,
            "DateApproved": None,
            "DateDeclined": None,
            "DateCanceled": None,
            "DateCompleted": None,
            "LastUpdated": moment,
            "Subtotal": 0.0,
            "ShippingCost": 0.0,
            "TaxCost": 0.0,
            "Gratuity": 0.0,
            "Fees": 0.0,
            "PromotionDiscount": 0.0,
            "Currency": self._directory.buyers[user.buyer_id].currency,
            "Total": 0.0,
            "IsSubmitted": False,
            "SubscriptionID": None,
            "xp": body.get("xp"),
        }
        record = OrderRecord(order, shopper.owner)
        self._records[order_id] = record
        return record

    def patch(self, record: OrderRecord, body: dict[str, Any]) -> None:
        self._require_unsubmitted(record)
        if "Comments" in body:
            record.order["Comments"] = body["Comments"]
        if "xp" in body:
            record.order["xp"] = _merge(record.order["xp"], body["xp"])
        record.order["LastUpdated"] = _now()

    def delete(self, record: OrderRecord) -> None:
        self._require_unsubmitted(record)
        del self._records[record.order["ID"]]

    def cart(self, shopper: Shopper) -> OrderRecord | None:
        """The shopper's current cart: their most recently touched unsubmitted order."""
        open_orders = [r for r in self.owned(shopper) if not r.order["IsSubmitted"]]
        return max(open_orders, key=lambda r: r.order["LastUpdated"], default=None)

    def cart_or_start(self, shopper: Shopper) -> OrderRecord:
        return self.cart(shopper) or self.create(shopper, {})

    def empty_cart(self, shopper: Shopper) -> dict[str, Any]:
        """What `GET /v1/cart` answers when there is no cart: an Order whose ID is null."""
        buyer = self._directory.buyers[shopper.user.buyer_id]
        return {
            "ID": None,
            "FromUser": self._directory.order_user(shopper.user),
            "FromCompanyID": buyer.id,
            "ToCompanyID": SELLER_ID,
            "FromUserID": shopper.user.id,
            "LineItemCount": 0,
            "Status": "Unsubmitted",
            "DateCreated": None,
            "DateSubmitted": None,
            "LastUpdated": None,
            "Subtotal": 0.0,
            "ShippingCost": 0.0,
            "TaxCost": 0.0,
            "PromotionDiscount": 0.0,
            "Currency": buyer.currency,
            "Total": 0.0,
            "IsSubmitted": False,
            "xp": None,
        }

    def submit(self, record: OrderRecord, when: str | None = None) -> None:
        if record.order["IsSubmitted"]:
            raise ApiError(
                400,
                "Order.CannotSubmitBadStatus",
                f"Order cannot be submitted in status {record.order['Status']}.",
                {"ObjectType": "Order", "ObjectID": record.order["ID"]},
            )
        if not record.lines:
            raise ApiError(
                400,
                "Order.CannotSubmitWithNoLineItems",
                "Order must have at least one line item to be submitted.",
                {"ObjectType": "Order", "ObjectID": record.order["ID"]},
            )
        moment = when or _now()
        record.order.update(
            Status="Open", IsSubmitted=True, DateSubmitted=moment, LastUpdated=moment
        )

    def transfer(self, anonymous_owner: str, shopper: Shopper) -> None:
        """Give an anonymous session's unsubmitted orders (and their lines) to `shopper`."""
        for record in self._records.values():
            if record.owner == anonymous_owner and not record.order["IsSubmitted"]:
                record.owner = shopper.owner
                record.order.update(
                    FromUser=self._directory.order_user(shopper.user),
                    FromUserID=shopper.user.id,
                    LastUpdated=_now(),
                )

    @staticmethod
    def _require_unsubmitted(record: OrderRecord) -> None:
        if record.order["IsSubmitted"]:
            raise ApiError(
                400,
                "Order.CannotModifyBadStatus",
                f"Order {record.order['ID']} has been submitted and cannot be changed.",
                {"ObjectType": "Order", "ObjectID": record.order["ID"]},
            )

    # Line items ---------------------------------------------------------------------------

    def line(self, record: OrderRecord, line_id: str) -> dict[str, Any]:
        line = record.lines.get(line_id)
        if line is None:
            raise not_found("LineItem", line_id)
        return line

    def add_line(
        self, record: OrderRecord, body: dict[str, Any], when: str | None = None
    ) -> dict[str, Any]:
        self._require_unsubmitted(record)
        line_id = body.get("ID")
        if line_id is not None and (not isinstance(line_id, str) or not line_id):
            raise invalid("ID must be a non-empty string.", data={"Field": "ID"})
        if line_id in record.lines:
            raise ApiError(
                409,
                "IdExists",
                f"LineItem already exists: {line_id}",
                {"ObjectType": "LineItem", "ObjectID": line_id},
            )
        line = self._priced({"ID": line_id or _new_id(), "DateAdded": when or _now()}, body, record)
        record.lines[line["ID"]] = line
        self._total(record)
        return line

    def save_line(self, record: OrderRecord, line_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """PUT: replace the line item, or create it under this ID."""
        self._require_unsubmitted(record)
        existing = record.lines.get(line_id)
        added = existing["DateAdded"] if existing else _now()
        line = self._priced({"ID": line_id, "DateAdded": added}, body, record)
        record.lines[line_id] = line
        self._total(record)
        return line

    def patch_line(self, record: OrderRecord, line_id: str, body: dict[str, Any]) -> dict[str, Any]:
        self._require_unsubmitted(record)
        current = self.line(record, line_id)
        merged = {
            "ProductID": body.get("ProductID", current["ProductID"]),
            "Quantity": body.get("Quantity", current["Quantity"]),
            "xp": _merge(current["xp"], body["xp"]) if "xp" in body else current["xp"],
            **{
                k: body.get(k, current[k])
                for k in ("CostCenter", "DateNeeded", "ShippingAddressID")
            },
        }
        line = self._priced({"ID": line_id, "DateAdded": current["DateAdded"]}, merged, record)
        record.lines[line_id] = line
        self._total(record)
        return line

    def delete_line(self, record: OrderRecord, line_id: str) -> None:
        self._require_unsubmitted(record)
        self.line(record, line_id)
        del record.lines[line_id]
        self._total(record)

    def _priced(
        self, base: dict[str, Any], body: dict[str, Any], record: OrderRecord
    ) -> dict[str, Any]:
        """A complete LineItem from the writable fields in `body`, priced from the product."""
        product_id = body.get("ProductID")
        if not isinstance(product_id, str) or not product_id:
            raise invalid("ProductID is required.", data={"Field": "ProductID"})
        quantity = _quantity(body.get("Quantity", 1))
        buyer_id = record.order["FromCompanyID"]
        product = self._products[buyer_id].get(product_id)
        if product is None:
            raise not_found("Product", product_id)
        schedule = product["PriceSchedule"]
        tier = max(
            (b for b in schedule["PriceBreaks"] if b["Quantity"] <= quantity),
            key=lambda b: b["Quantity"],
        )
        on_sale = bool(schedule["IsOnSale"] and tier.get("SalePrice") is not None)
        unit = tier["SalePrice"] if on_sale else tier["Price"]
        subtotal = round(unit * quantity, 2)
        return {
            "ID": base["ID"],
            "ProductID": product_id,
            "Quantity": quantity,
            "BundleItemID": None,
            "IsBundle": False,
            "DateAdded": base["DateAdded"],
            "QuantityShipped": 0,
            "UnitPrice": unit,
            "PromotionDiscount": 0.0,
            "LineTotal": subtotal,
            "LineSubtotal": subtotal,
            "CostCenter": body.get("CostCenter"),
            "DateNeeded": body.get("DateNeeded"),
            "ShippingAccount": None,
            "ShippingAddressID": body.get("ShippingAddressID"),
            "ShipFromAddressID": None,
            "Product": {name: product[name] for name in _LINE_FIELDS},
            "Variant": None,
            "ShippingAddress": None,
            "ShipFromAddress": None,
            "SupplierID": None,
            "InventoryRecordID": None,
            "PriceScheduleID": schedule["ID"],
            "IsOnSale": on_sale,
            "PriceOverridden": False,
            "Specs": [],
            "IncomingOrderID": None,
            "OutgoingOrderID": None,
            "InvitationID": None,
            "xp": body.get("xp"),
        }

    def _total(self, record: OrderRecord) -> None:
        order = record.order
        subtotal = round(sum(line["LineSubtotal"] for line in record.lines.values()), 2)
        order["Subtotal"] = subtotal
        order["LineItemCount"] = len(record.lines)
        order["Total"] = round(
            subtotal
            + order["ShippingCost"]
            + order["TaxCost"]
            + order["Gratuity"]
            - order["PromotionDiscount"],
            2,
        )
        order["LastUpdated"] = _now()

    # Seed ---------------------------------------------------------------------------------

    def seed_history(self, now: datetime) -> None:
        """Submit the catalog's ORDER_HISTORY, dated relative to `now`."""
        counts: dict[str, int] = {}
        for username, days_ago, lines in ORDER_HISTORY:
            user = self._directory.by_username(username)
            assert user is not None, username
            counts[username] = counts.get(username, 0) + 1
            moment = iso(now - timedelta(days=days_ago))
            shopper = Shopper(user, {})
            record = self.create(
                shopper, {"ID": f"{username}-{counts[username]:04d}"}, created=moment
            )
            for product_id, quantity in lines:
                self.add_line(record, {"ProductID": product_id, "Quantity": quantity}, when=moment)
            self.submit(record, when=moment)
            record.order["LastUpdated"] = moment
