"""The pure OrderCloud order -> CDP batch order record formatting."""

from __future__ import annotations

import json

from tracking.backfill.records import RecordConfig, encode, order_record, order_ref
from tracking.productfields import ProductFields

ORDER = {
    "ID": "o-1",
    "FromCompanyID": "acme",
    "FromUserID": "jane",
    "FromUser": {"Email": "jane@acme.example"},
    "DateSubmitted": "2025-03-04T05:06:07.891+00:00",
    "Currency": "usd",
    "Total": 12.5,
}
LINES = [
    {
        "ID": "l1",
        "ProductID": "p1",
        "Quantity": 2,
        "UnitPrice": 6.25,
        "Product": {"ID": "p1", "Name": "x" * 200, "xp": {"category": "bikes"}},
    }
]


def test_an_order_becomes_one_upsert_record_keyed_by_its_id() -> None:
    record = order_record(ORDER, LINES, RecordConfig("WEB", "shop.example"))
    assert record["ref"] == order_ref("o-1") != order_ref("o-2")
    assert (record["schema"], record["mode"]) == ("order", "upsert")
    value = record["value"]
    assert value["orderedAt"] == "2025-03-04T05:06:07.891Z"
    assert (value["currencyCode"], value["price"], value["status"]) == ("USD", 12.5, "PURCHASED")
    assert value["contact"]["identifiers"][0] == {"provider": "ordercloud", "id": "acme-jane"}
    [item] = value["orderItems"]
    assert (item["referenceId"], item["quantity"], item["price"]) == ("o-1-l1", 2, 6.25)
    assert len(item["name"]) == 128 and "extensions" not in item
    line = encode(record)
    assert line.endswith(b"\n") and b"\n" not in line[:-1] and json.loads(line) == record


def test_mapped_product_fields_become_order_item_extensions() -> None:
    fields = ProductFields.parse("itemCategory=xp.category")
    record = order_record(ORDER, LINES, RecordConfig("WEB", "pos", fields))
    [item] = record["value"]["orderItems"]
    assert item["extensions"] == [{"name": "ext", "key": "default", "itemCategory": "bikes"}]
