"""OrderCloud orders as CDP Batch API order records: one JSON object per line, pure functions.

Each record's `ref` is derived from the order ID, and its mode is upsert, so loading the same
orders again updates them in CDP instead of adding copies.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway.identity import guest_identifier
from tracking.destinations.cdp import with_extension
from tracking.productfields import ProductFields

_NAMESPACE = uuid.UUID("3d0f5a7e-6c41-4b8e-9f0a-2b6d8e1c4a57")
_NAME_LIMIT = 128  # CDP rejects longer order item names


@dataclass(frozen=True, slots=True)
class RecordConfig:
    """What every record carries besides the order itself."""

    channel: str
    pos: str
    product_fields: ProductFields | None = None  # mapped xp values as order item extensions


def order_ref(order_id: str) -> str:
    """The record's ref: the same order always gets the same ref, so a rerun upserts it."""
    return str(uuid.uuid5(_NAMESPACE, f"order:{order_id}"))


def guest_id(order: dict[str, Any]) -> str:
    """`{Buyer.ID}-{user ID}`: the `ordercloud` identifier the gateway's IDENTITY events carry."""
    return f"{order.get('FromCompanyID') or ''}-{order.get('FromUserID') or ''}"


def cdp_time(value: str | None) -> str:
    """An OrderCloud ISO 8601 date as CDP writes times: UTC, milliseconds, `Z`."""
    if not value:
        raise ValueError("a submitted order needs DateSubmitted")
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def order_record(
    order: dict[str, Any], lines: list[dict[str, Any]], config: RecordConfig
) -> dict[str, Any]:
    """The batch record for one submitted order and all its line items."""
    order_id = str(order["ID"])
    ordered_at = cdp_time(order.get("DateSubmitted"))
    currency = str(order.get("Currency") or "USD").upper()
    identifiers = [guest_identifier(guest_id(order))]
    email = (order.get("FromUser") or {}).get("Email")
    if email:
        identifiers.append({"provider": "email", "id": str(email)})
    value = {
        "referenceId": order_id,
        "channel": config.channel,
        "pointOfSale": config.pos,
        "status": "PURCHASED",
        "orderedAt": ordered_at,
        "currencyCode": currency,
        "price": float(order.get("Total") or 0),
        "paymentType": "other",  # OrderCloud keeps payments elsewhere; the stream sends the same
        "contact": {"identifiers": identifiers},
        "orderItems": [_item(order_id, line, ordered_at, currency, config) for line in lines],
    }
    return {"ref": order_ref(order_id), "schema": "order", "mode": "upsert", "value": value}


def _item(
    order_id: str, line: dict[str, Any], ordered_at: str, currency: str, config: RecordConfig
) -> dict[str, Any]:
    product = line.get("Product") or {}
    product_id = str(line.get("ProductID") or product.get("ID") or "")
    item = {
        "type": "PRODUCT",
        "referenceId": f"{order_id}-{line.get('ID')}",
        "orderedAt": ordered_at,
        "status": "PURCHASED",
        "productId": product_id,
        "name": str(product.get("Name") or product_id)[:_NAME_LIMIT],
        "quantity": int(line.get("Quantity") or 1),
        "price": float(line.get("UnitPrice") or 0),
        "currencyCode": currency,
    }
    return with_extension(item, product, config.product_fields)


def encode(record: dict[str, Any]) -> bytes:
    """One minified JSON line, as the batch file format wants."""
    return orjson.dumps(record) + b"\n"
