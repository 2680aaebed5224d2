"""Destination formatters (CDP, Send, Discover, webhook) and their senders' wire details."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import httpx
import pytest

from state import events as ev
from state.events import Event
from tests.fakes_destinations import Sink, client_for
from tracking.destinations import cdp, discover, send, webhook
from tracking.destinations.cdp import CdpConfig, CdpDestination
from tracking.destinations.discover import DiscoverDestination
from tracking.destinations.outcome import DeliveryError, check
from tracking.destinations.send import SendDestination
from tracking.destinations.webhook import WebhookDestination

pytestmark = pytest.mark.anyio
CONFIG = CdpConfig(client_key="ck", pos="shop.example", channel="WEB")
LINES = [
    {
        "ID": "l1",
        "ProductID": "p1",
        "Quantity": 2,
        "UnitPrice": 5.0,
        "LineTotal": 10.0,
        "Product": {"ID": "p1", "Name": "Bike"},
    },
    {
        "ID": "l2",
        "ProductID": "p2",
        "Quantity": 1,
        "UnitPrice": 3.5,
        "LineTotal": 3.5,
        "Product": {"ID": "p2", "Name": "Bell"},
    },
]
CONTEXT = {
    "ip": "203.0.113.5",
    "user_agent": "Firefox",
    "language": "en",
    "currency": "eur",
    "origin": "https://shop.example",
}


def submitted(**kw: object) -> Event:
    values: dict[str, object] = {
        "type": ev.ORDER_SUBMITTED,
        "visitor": "b1-jane",
        "anonymous": False,
        "occurred_at": 1_700_000_000.0,
        "browser_id": "bid-1",
        "context": dict(CONTEXT),
        "data": {
            "order_id": "o1",
            "order": {"ID": "o1", "Total": 13.5, "Currency": "EUR"},
            "lineitems": LINES,
            "products": {
                "p1": {
                    "ID": "p1",
                    "Name": "Bike",
                    "xp": {"Images": [{"url": "https://img/p1.png"}]},
                }
            },
            "user": {"Email": "jane@example.com", "FirstName": "Jane"},
        },
    }
    values.update(kw)
    return Event(**values)  # type: ignore[arg-type]


def test_cdp_multi_order_is_add_confirm_checkout() -> None:
    bodies = cdp.payloads(submitted(), CONFIG)
    assert [b["type"] for b in bodies] == ["ADD", "ADD", "CONFIRM", "CHECKOUT"]
    for body in bodies:
        assert body["browser_id"] == "bid-1" and body["pos"] == "shop.example"
        assert (body["language"], body["currency"], body["channel"]) == ("EN", "EUR", "WEB")
        assert body["client_key"] == "ck"
    add = bodies[0]["product"]
    assert (add["item_id"], add["productId"], add["quantity"], add["price"]) == ("l1", "p1", 2, 5.0)
    assert add["orderedAt"] == "2023-11-14T22:13:20.000Z" and add["currency"] == "EUR"
    assert bodies[2]["product"] == [{"item_id": "l1"}, {"item_id": "l2"}]
    assert (bodies[3]["reference_id"], bodies[3]["status"]) == ("O1", "PURCHASED")


def test_cdp_single_order_is_identity_then_order_checkout() -> None:
    bodies = cdp.payloads(submitted(), CdpConfig("ck", "pos", order_mode="single"))
    assert [b["type"] for b in bodies] == ["IDENTITY", "ORDER_CHECKOUT"]
    order = bodies[1]["order"]
    assert order["referenceId"] == "o1" and order["price"] == 13.5 and len(order["orderItems"]) == 2


def test_cdp_identity_links_ordercloud_and_email() -> None:
    event = Event(
        type=ev.IDENTIFIED,
        visitor="b1-jane",
        anonymous=False,
        occurred_at=1.0,
        browser_id="bid-1",
        data={"user": {"Email": "jane@example.com", "LastName": "Doe"}},
    )
    [body] = cdp.payloads(event, CONFIG)
    assert body["identifiers"] == [
        {"provider": "ordercloud", "id": "b1-jane"},
        {"provider": "email", "id": "jane@example.com"},
    ]
    assert body["email"] == "jane@example.com" and body["lastname"] == "Doe"


@pytest.mark.parametrize(
    ("type_", "data", "cdp_type"),
    [
        (ev.PRODUCT_VIEWED, {"product": {"ID": "p1", "Name": "Bike"}}, "VIEW"),
        (ev.PRODUCTS_SEARCHED, {"search": "bike"}, "SEARCH"),
        (ev.LINE_ADDED, {"lineitem": LINES[0]}, "ADD"),
        (ev.LINE_UPDATED, {"lineitem": LINES[0]}, "ADD"),
        (ev.CART_CLEARED, {}, "CLEAR_CART"),
        (ev.CART_ABANDONED, {"order_id": "o1", "value": 3.0, "items": 1}, "CART_ABANDONED"),
        (ev.DECISION_EXPOSED, {"table": "t", "rule": "r", "variant": "v"}, "DECISION_EXPOSED"),
    ],
)
def test_cdp_event_types(type_: str, data: dict[str, object], cdp_type: str) -> None:
    event = Event(type=type_, visitor="anon-1", occurred_at=1.0, browser_id="b", data=data)
    [body] = cdp.payloads(event, CONFIG)
    assert body["type"] == cdp_type and body["pos"] and body["browser_id"] == "b"
    if cdp_type == "VIEW":
        assert body["ext"] == {"productId": "p1", "productName": "Bike"}
    if cdp_type == "SEARCH":
        assert body["product_name"] == "bike"


def removal(**data: object) -> Event:
    values = {"lineitem": {"ID": "l3"}, "order_id": "o1", **data}
    return Event(
        type=ev.LINE_REMOVED, visitor="anon-1", occurred_at=1.0, browser_id="b", data=values
    )


def test_cdp_removal_restates_the_cart_as_clear_cart_then_the_remaining_lines() -> None:
    bodies = cdp.payloads(removal(lineitems=LINES), CONFIG)
    assert [b["type"] for b in bodies] == ["CLEAR_CART", "ADD", "ADD"]
    assert [(b["product"]["item_id"], b["product"]["quantity"]) for b in bodies[1:]] == [
        ("l1", 2),
        ("l2", 1),
    ]
    assert bodies[1]["product"]["referenceId"] == "o1-l1"  # the same ids the first ADDs had
    assert all(b["browser_id"] == "b" and b["pos"] == "shop.example" for b in bodies)
    [alone] = cdp.payloads(removal(lineitems=[]), CONFIG)  # the last line went: an empty cart
    assert alone["type"] == "CLEAR_CART"
    assert cdp.payloads(removal(), CONFIG) == []  # remaining lines unknown: CDP's cart is kept


def test_an_update_to_quantity_zero_is_a_removal() -> None:
    zero = Event(
        type=ev.LINE_UPDATED,
        visitor="anon-1",
        occurred_at=1.0,
        browser_id="b",
        data={"lineitem": {**LINES[0], "Quantity": 0}, "order_id": "o1", "lineitems": LINES[1:]},
    )
    assert zero.removes_line and removal().removes_line
    assert [b["type"] for b in cdp.payloads(zero, CONFIG)] == ["CLEAR_CART", "ADD"]
    cart = discover.payload(zero)
    assert cart and (cart["type"], cart["name"]) == ("status", "cart")
    assert cart["value"]["products"] == [{"sku": "p2", "quantity": 1, "price": 3.5}]
    updated = Event(type=ev.LINE_UPDATED, visitor="a", occurred_at=1.0, data={"lineitem": LINES[0]})
    assert not updated.removes_line and discover.payload(updated) is None


def test_discover_removal_states_the_remaining_cart() -> None:
    empty = discover.payload(removal(lineitems=[]))
    assert empty and (empty["type"], empty["name"], empty["value"]["products"]) == (
        "status",
        "cart",
        [],
    )
    assert discover.payload(removal()) is None


def test_cdp_never_formats_an_empty_browser_id() -> None:
    with pytest.raises(ValueError):
        cdp.payloads(submitted(browser_id=""), CONFIG)


async def test_cdp_sender_mints_a_browser_id_when_the_event_has_none() -> None:
    sink = Sink([201])
    client = client_for({"cdp.test": sink})

    async def browser_for(visitor: str | None) -> str:
        return await cdp.create_browser(client, "http://cdp.test", "ck")

    destination = CdpDestination(client, "http://cdp.test", CONFIG, browser_for)
    await destination.send([submitted(browser_id=None)])
    create, *events = sink.requests
    assert (
        create.url.path == "/v1.2/browser/create.json" and create.url.params["client_key"] == "ck"
    )
    assert [json.loads(r.content)["browser_id"] for r in events] == ["minted-bid"] * 4
    assert all(r.url.path == "/v1.2/events" for r in events)
    await client.aclose()


def test_send_order_completed_uses_the_send_product_model() -> None:
    [(path, body)] = send.requests(submitted(), "site-1")
    assert path == "/track" and body["actionType"] == "ORDER_COMPLETED"
    assert body["siteId"] == "site-1" and len(body["ContactId"]) == 32
    props = body["properties"][0]
    assert props["totalPrice"] == 13.5
    first = props["products"][0]
    assert first == {
        "itemCode": "p1",
        "itemName": "Bike",
        "itemPrice": 5.0,
        "itemQuantity": 2,
        "itemTotalPrice": 10.0,
        "itemUrl": "https://shop.example/products/p1",
        "itemImage": "https://img/p1.png",
    }


def test_send_identify_view_add_and_remove() -> None:
    ident = Event(
        type=ev.IDENTIFIED,
        visitor="b1-jane",
        occurred_at=1.0,
        data={"user": {"Email": "jane@example.com", "FirstName": "Jane", "LastName": "D"}},
    )
    [(path, body)] = send.requests(ident, "s")
    assert (path, body["actionType"], body["ContactName"]) == ("/identify", "IDENTIFY", "Jane D")
    assert send.requests(Event(type=ev.IDENTIFIED, visitor="x", occurred_at=1.0), "s") == []
    view = Event(
        type=ev.PRODUCT_VIEWED,
        visitor="a",
        occurred_at=1.0,
        data={"product": {"ID": "p1", "Name": "Bike"}},
    )
    [(_, body)] = send.requests(view, "s")
    assert (
        body["actionType"] == "PAGE_VIEWED" and body["properties"][0]["product"]["itemCode"] == "p1"
    )
    removed = Event(type=ev.LINE_REMOVED, visitor="a", occurred_at=1.0, data={"lineitem": LINES[0]})
    [(_, body)] = send.requests(removed, "s")
    assert body["actionType"] == "ADDED_TO_ORDER"
    assert body["properties"][0]["product"]["itemQuantity"] == -1


async def test_send_passes_the_visitor_ip_and_agent_in_headers() -> None:
    sink = Sink([200])
    client = client_for({"send.test": sink})
    await SendDestination(client, "http://send.test", "s").send([submitted()])
    [request] = sink.requests
    assert request.url.path == "/track"
    assert request.headers["x-original-request-ip-address"] == "203.0.113.5"
    assert request.headers["x-original-user-agent"] == "Firefox"
    await client.aclose()


def test_discover_payloads() -> None:
    view = Event(
        type=ev.PRODUCT_VIEWED,
        visitor="anon-1",
        occurred_at=2.0,
        context=dict(CONTEXT),
        data={"product": {"ID": "p1"}},
    )
    body = discover.payload(view)
    assert body is not None
    assert (body["type"], body["name"], body["t"], body["user_id"]) == (
        "view",
        "pdp",
        2000,
        "anon-1",
    )
    assert body["value"]["context"]["geo"] == {"ip": "203.0.113.5"}
    assert body["value"]["context"]["browser"] == {"user_agent": "Firefox"}
    add = discover.payload(
        Event(type=ev.LINE_ADDED, visitor="a", occurred_at=1.0, data={"lineitem": LINES[0]})
    )
    assert add and (add["type"], add["value"]["products"]) == (
        "a2c",
        [{"sku": "p1", "quantity": 2, "price": 5.0}],
    )
    order = discover.payload(submitted())
    assert order and (order["type"], order["name"]) == ("order", "confirm")
    assert order["value"]["user"] == {"id": "b1-jane"} and len(order["value"]["products"]) == 2


async def test_discover_sender_puts_the_key_in_authorization() -> None:
    sink = Sink([200])
    client = client_for({"rfk.test": sink})
    await DiscoverDestination(client, "http://rfk.test/event", "01-abc").send([submitted()])
    [request] = sink.requests
    assert request.headers["authorization"] == "01-abc"
    data = json.loads(parse_qs(request.content.decode())["data"][0])
    assert data["type"] == "order"
    await client.aclose()


async def test_webhook_envelope_and_hmac_signature() -> None:
    sink = Sink([200])
    client = client_for({"hook.test": sink})
    event = submitted()
    await WebhookDestination(client, "http://hook.test/x", "s3cret").send([event])
    [request] = sink.requests
    raw = request.content
    assert request.headers["x-ocgw-event-id"] == event.id
    assert webhook.verify("s3cret", raw, request.headers["x-ocgw-signature"])
    assert not webhook.verify("other", raw, request.headers["x-ocgw-signature"])
    body = json.loads(raw)
    assert body["type"] == "sitecore.backbone.messages.orders.submitted"
    assert (body["id"], body["visitor"], body["browser_id"]) == (event.id, "b1-jane", "bid-1")
    assert body["payload"]["lineitems"][1]["ID"] == "l2" and body["time"].endswith("Z")
    await client.aclose()


@pytest.mark.parametrize(
    ("status", "permanent"), [(400, True), (404, True), (408, False), (429, False), (500, False)]
)
def test_status_classification(status: int, permanent: bool) -> None:
    with pytest.raises(DeliveryError) as caught:
        check(httpx.Response(status, headers={"retry-after": "7"}))
    assert caught.value.permanent is permanent and caught.value.retry_after == 7.0
    check(httpx.Response(201))
