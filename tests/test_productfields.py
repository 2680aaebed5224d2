"""The configurable product field paths and the formatters that use them (Send, CDP)."""

from __future__ import annotations

import pytest

from gateway.settings import ConfigError, load_settings
from state import events as ev
from state.events import Event
from tests.fakes_destinations import Sink, client_for
from tests.test_tracking_destinations import CONTEXT, submitted
from tracking.destinations import cdp, send
from tracking.destinations.cdp import CdpConfig
from tracking.destinations.send import SendDestination
from tracking.productfields import DEFAULT_FIELDS, ProductFields, read_path

PRODUCT = {
    "ID": "p1",
    "Name": "Bike",
    "xp": {
        "Images": [{"Url": "https://img.example/p1.jpg"}, {"Url": "https://img.example/2.jpg"}],
        "url": "/products/p1/bike",
        "category": "bikes",
        "manufacturer": "Halden",
        "supplier": "Acme Supply",
        "specs": {"colour": "red"},
    },
}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("xp.Images.0.Url", "https://img.example/p1.jpg"),
        ("xp.images.1.url", "https://img.example/2.jpg"),  # keys fall back to any case
        ("xp.Images.2.Url", None),
        ("xp.Images.first", None),
        ("xp.specs.colour", "red"),
        ("xp.specs.colour.more", None),
        ("Name", "Bike"),
        ("xp.missing", None),
    ],
)
def test_read_path(path: str, value: object) -> None:
    assert read_path(PRODUCT, path) == value


def test_mappings_parse_from_pairs_or_json_and_reject_nonsense() -> None:
    pairs = ProductFields.parse("itemImage=xp.Images.0.Url, itemColour = xp.specs.colour")
    as_json = ProductFields.parse(
        '{"itemImage": "xp.Images.0.Url", "itemColour": "xp.specs.colour"}'
    )
    assert pairs == as_json
    assert pairs.values(PRODUCT) == {
        "itemImage": "https://img.example/p1.jpg",
        "itemColour": "red",
    }
    for bad in ("itemImage", "itemImage=", "=xp.url", "itemImage=xp..url"):
        with pytest.raises(ValueError):
            ProductFields.parse(bad)


def test_a_bad_mapping_stops_the_gateway_at_start_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OCGW_SEND_PRODUCT_FIELDS", "itemImage")
    with pytest.raises(ConfigError, match="OCGW_SEND_PRODUCT_FIELDS"):
        load_settings()


def test_send_products_carry_the_default_xp_fields() -> None:
    view = Event(
        type=ev.PRODUCT_VIEWED,
        visitor="a",
        occurred_at=1.0,
        context=dict(CONTEXT),
        data={"product": PRODUCT},
    )
    [(_, body)] = send.requests(view, "s")
    item = body["properties"][0]["product"]
    assert item["itemImage"] == "https://img.example/p1.jpg"
    assert item["itemUrl"] == "https://shop.example/products/p1/bike" == body["Url"]
    assert (item["itemCategory"], item["itemManufacturer"], item["itemSupplier"]) == (
        "bikes",
        "Halden",
        "Acme Supply",
    )


def test_send_products_follow_a_configured_mapping() -> None:
    fields = ProductFields.parse(
        "itemImage=xp.Images.1.Url,itemUrl=xp.url,itemColour=xp.specs.colour"
    )
    view = Event(type=ev.PRODUCT_VIEWED, visitor="a", occurred_at=1.0, data={"product": PRODUCT})
    [(_, body)] = send.requests(view, "s", fields)
    item = body["properties"][0]["product"]
    assert item["itemImage"] == "https://img.example/2.jpg" and item["itemColour"] == "red"
    assert "itemCategory" not in item
    relative = {**PRODUCT, "xp": {"Images": [{"url": "img/p1.jpg"}]}}  # not a URL: left out
    [(_, body)] = send.requests(
        Event(type=ev.PRODUCT_VIEWED, visitor="a", occurred_at=1.0, data={"product": relative}),
        "s",
        DEFAULT_FIELDS,
    )
    assert "itemImage" not in body["properties"][0]["product"]


@pytest.mark.anyio
async def test_send_destination_sends_the_mapped_fields() -> None:
    sink = Sink([200])
    client = client_for({"send.test": sink})
    fields = ProductFields.parse("itemImage=xp.Images.0.Url,itemSupplier=xp.supplier")
    event = submitted(data={**submitted().data, "products": {"p1": PRODUCT}})
    await SendDestination(client, "http://send.test", "s", fields).send([event])
    [body] = sink.json()
    first, second = body["properties"][0]["products"]
    assert (first["itemImage"], first["itemSupplier"]) == (
        "https://img.example/p1.jpg",
        "Acme Supply",
    )
    assert "itemImage" not in second and "itemSupplier" not in second
    await client.aclose()


def test_cdp_order_items_carry_mapped_fields_only_when_configured() -> None:
    event = submitted(data={**submitted().data, "products": {"p1": PRODUCT}})
    plain = cdp.payloads(event, CdpConfig("ck", "pos", order_mode="single"))[-1]
    assert all("extensions" not in item for item in plain["order"]["orderItems"])
    fields = ProductFields.parse("itemCategory=xp.category")
    mapped = cdp.payloads(event, CdpConfig("ck", "pos", order_mode="single", product_fields=fields))
    first, second = mapped[-1]["order"]["orderItems"]
    assert first["extensions"] == [{"name": "ext", "key": "default", "itemCategory": "bikes"}]
    assert "extensions" not in second
