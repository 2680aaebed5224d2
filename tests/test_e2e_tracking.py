"""Tracking end to end: storefront calls through the gateway to the sandbox, events delivered to
a fake CDP, Send, Discover and webhook receiver on loopback."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import jwt
import pytest

from gateway.app import create_app
from gateway.sandbox import create_app as create_sandbox
from gateway.sandbox.catalog import CLIENT_ID
from gateway.serving import serve_in_thread as running
from gateway.settings import Settings
from tests.fake_sitecore import FakeSitecore
from tests.servers import wait_for

pytestmark = pytest.mark.e2e
SECRET = "whsec-test"
PREFIX = "sitecore.backbone.messages."


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[str, FakeSitecore, Path]]:
    sitecore = FakeSitecore()
    with running(sitecore) as sink, running(create_sandbox()) as sandbox:
        settings = Settings(
            upstream_url=sandbox,
            store=tmp_path / "gw.db",  # type: ignore[arg-type]
            events_file=tmp_path / "events.jsonl",
            cdp_url=f"{sink}/cdp",
            cdp_client_key="ck-test",
            cdp_pos="shop.example",  # type: ignore[arg-type]
            send_url=f"{sink}/send",
            send_site_id="2f6c7a4e-3d2b-4c1a-9e8f-0a1b2c3d4e5f",  # type: ignore[arg-type]
            discover_url=f"{sink}/discover/events",
            discover_api_key="01-abc-def",  # type: ignore[arg-type]
            webhook_url=f"{sink}/hook",
            webhook_secret=SECRET,  # type: ignore[arg-type]
        )
        with running(create_app(settings), lifespan="on") as gateway:
            yield gateway, sitecore, tmp_path


class Storefront:
    def __init__(self, gateway: str) -> None:
        self.http = httpx.Client(
            base_url=gateway, timeout=10, headers={"User-Agent": "Mozilla/5.0 (Storefront test)"}
        )
        self.token: str | None = None

    def grant(self, **form: str) -> str:
        response = self.http.post(
            "/oauth/token", data={"client_id": CLIENT_ID, "scope": "Shopper", **form}
        )
        response.raise_for_status()
        self.token = response.json()["access_token"]
        return self.token

    def __call__(
        self,
        method: str,
        path: str,
        expect: int | None = None,
        headers: dict[str, str] | None = None,
        **kwargs,
    ) -> httpx.Response:
        sent = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        response = self.http.request(method, path, headers={**sent, **(headers or {})}, **kwargs)
        if expect is not None:
            assert response.status_code == expect, response.text
        return response


def hook_types(sitecore: FakeSitecore) -> list[str]:
    return [
        r["headers"]["x-ocgw-event-type"].removeprefix(PREFIX) for r in sitecore.received("/hook")
    ]


def test_every_operation_becomes_events_at_every_destination(stack):
    gateway, sitecore, _ = stack
    shop = Storefront(gateway)
    anon = shop.grant(grant_type="client_credentials")
    order_id = jwt.decode(anon, options={"verify_signature": False})["orderid"]

    shop("GET", "/v1/me/products?search=watch&pageSize=3", 200)  # searched
    shop("GET", "/v1/me/products/p-007", 200)  # viewed
    shop("GET", "/v1/me/products/no-such-product", 404)  # nothing
    first = shop(
        "POST",
        f"/v1/orders/Outgoing/{order_id}/lineitems",
        201,
        json={"ProductID": "p-007", "Quantity": 1},
    ).json()  # added (orders)
    second = shop(
        "POST", "/v1/Cart/LineItems", 201, json={"ProductID": "p-013", "Quantity": 1}
    ).json()  # added (cart, mixed case)
    shop("PATCH", f"/v1/cart/lineitems/{first['ID']}", 200, json={"Quantity": 2})  # updated
    shop(
        "PUT",
        f"/v1/orders/outgoing/{order_id}/lineitems/{first['ID']}",
        200,
        json={"ProductID": "p-007", "Quantity": 3},
    )  # updated (orders)
    shop("DELETE", f"/v1/cart/lineitems/{second['ID']}", 204)  # removed
    shop("POST", "/v1/cart/lineitems", 201, json={"ProductID": "p-021", "Quantity": 1})

    shop.grant(grant_type="password", username="jane", password="jane-pass")  # identified
    shop("PUT", f"/v1/me/orders?anonUserToken={anon}", 204)  # identified + stitched
    submitted = shop("POST", "/v1/cart/submit", 201).json()  # submitted (cart)

    shop("POST", "/v1/cart/lineitems", 201, json={"ProductID": "p-030", "Quantity": 1})
    shop("DELETE", "/v1/cart", 204)  # cart cleared
    other = shop("POST", "/v1/orders/Outgoing", 201, json={}).json()
    shop(
        "POST",
        f"/v1/orders/Outgoing/{other['ID']}/lineitems",
        201,
        json={"ProductID": "p-040", "Quantity": 1},
    )
    shop("POST", f"/v1/orders/Outgoing/{other['ID']}/submit", 201)  # submitted (orders)
    third = shop("POST", "/v1/orders/Outgoing", 201, json={}).json()
    shop("DELETE", f"/v1/orders/Outgoing/{third['ID']}", 204)  # unsubmitted order deleted

    newcomer = Storefront(gateway)
    anon2 = newcomer.grant(grant_type="client_credentials")
    newcomer(
        "PUT",
        f"/v1/me/register?anonUserToken={anon2}",
        200,
        json={
            "Username": "nina",
            "Password": "nina-pass-1",
            "FirstName": "Nina",
            "LastName": "New",
            "Email": "nina@example.com",
            "Active": True,
        },
    )  # identified (register)

    expected = {
        "products.searched": 1,
        "products.viewed": 1,
        "orders.lines.added": 5,
        "orders.lines.updated": 2,
        "orders.lines.removed": 1,
        "orders.submitted": 2,
        "orders.cleared": 2,
        "sessions.identified": 3,
    }

    def all_arrived() -> bool:
        types = hook_types(sitecore)
        return all(types.count(t) >= n for t, n in expected.items())

    assert wait_for(all_arrived), hook_types(sitecore)
    types = hook_types(sitecore)
    for event_type, count in expected.items():
        assert types.count(event_type) == count, (event_type, types)

    # The webhook: signed over the raw body, event id in a header, hydrated order payload.
    for request in sitecore.received("/hook"):
        digest = hmac.new(SECRET.encode(), request["body"], hashlib.sha256).hexdigest()
        assert request["headers"]["x-ocgw-signature"] == f"sha256={digest}"
        assert request["headers"]["x-ocgw-event-id"] == json.loads(request["body"])["id"]
    orders = [
        json.loads(r["body"])
        for r in sitecore.received("/hook")
        if r["headers"]["x-ocgw-event-type"] == PREFIX + "orders.submitted"
    ]
    cart_order = next(o for o in orders if o["payload"]["order"]["ID"] == submitted["ID"])
    assert cart_order["visitor"] == "acme-jane"
    assert {li["ProductID"] for li in cart_order["payload"]["lineitems"]} == {"p-007", "p-021"}
    assert set(cart_order["payload"]["products"]) >= {"p-007", "p-021"}
    assert cart_order["payload"]["user"]["Username"] == "jane"

    # CDP: never an empty browser id, pos always set, and the guest's browser id carries over.
    cdp = sitecore.json("/cdp/v1.2/events")
    assert cdp and all(e["browser_id"] and e["pos"] == "shop.example" for e in cdp)
    guest = {e["browser_id"] for e in cdp if e["type"] in ("SEARCH", "VIEW")}
    assert len(guest) == 1, [(e["type"], e["browser_id"][:8]) for e in cdp]
    stitched = [e for e in cdp if e["type"] == "IDENTITY" and e["browser_id"] in guest]
    assert stitched and {"provider": "ordercloud", "id": "acme-jane"} in stitched[0]["identifiers"]
    sequence = [e["type"] for e in cdp if e["browser_id"] in guest]
    assert sequence.index("CONFIRM") < sequence.index("CHECKOUT")
    assert sequence.index("ADD") < sequence.index("CONFIRM")

    # Send and Discover got their own shapes; no destination ever saw a credential.
    send_actions = [b["actionType"] for b in sitecore.json("/send")]
    for action in ("IDENTIFY", "PAGE_VIEWED", "ADDED_TO_ORDER", "ORDER_COMPLETED"):
        assert action in send_actions
    assert any(
        r["headers"].get("x-original-user-agent") == "Mozilla/5.0 (Storefront test)"
        for r in sitecore.received("/send")
    )
    assert sitecore.received("/discover/events")
    everything = b"".join(
        r["body"] + r["query"].encode() + json.dumps(r["headers"]).encode()
        for r in sitecore.requests
    )
    for secret in (anon, anon2, shop.token, b"jane-pass", b"nina-pass-1"):
        secret = secret if isinstance(secret, bytes) else secret.encode()
        assert secret not in everything


def test_a_failed_call_emits_nothing_and_prefetch_is_not_tracked(stack):
    gateway, sitecore, _ = stack
    shop = Storefront(gateway)
    shop.grant(grant_type="client_credentials")
    shop("GET", "/v1/me/products/no-such-product", 404)
    shop("POST", "/v1/cart/lineitems", 404, json={"ProductID": "no-such-product", "Quantity": 1})
    shop("GET", "/v1/me/products/p-001", 200, headers={"Sec-Purpose": "prefetch"})
    shop("GET", "/v1/me/products/p-002", 200)  # a real view, to know delivery has caught up
    assert wait_for(lambda: "products.viewed" in hook_types(sitecore))
    time.sleep(0.2)
    assert hook_types(sitecore) == ["products.viewed"]
    viewed = json.loads(sitecore.received("/hook")[0]["body"])
    assert viewed["payload"]["product"]["ID"] == "p-002"


def test_destination_outage_then_recovery_delivers_everything_once_in_order(stack):
    gateway, sitecore, _ = stack
    sitecore.failures["/hook"] = [500, 503, 500]
    shop = Storefront(gateway)
    shop.grant(grant_type="client_credentials")
    for product in ("p-001", "p-002", "p-003"):
        shop("POST", "/v1/cart/lineitems", 201, json={"ProductID": product, "Quantity": 1})
    assert wait_for(lambda: hook_types(sitecore).count("orders.lines.added") >= 3, timeout=30)
    added = [json.loads(r["body"]) for r in sitecore.received("/hook")]
    assert [e["payload"]["lineitem"]["ProductID"] for e in added] == ["p-001", "p-002", "p-003"]
    assert len({e["id"] for e in added}) == 3


def cdp_carts(sitecore: FakeSitecore) -> dict[str, dict[str, int]]:
    """Each guest's cart as CDP holds it, replayed from the Stream API events it received: an
    ADD sets its line (a repeated item_id is an update), CLEAR_CART and CHECKOUT empty it."""
    carts: dict[str, dict[str, int]] = {}
    for event in sitecore.json("/cdp/v1.2/events"):
        cart = carts.setdefault(event["browser_id"], {})
        if event["type"] == "ADD":
            cart[event["product"]["item_id"]] = event["product"]["quantity"]
        elif event["type"] in ("CLEAR_CART", "CHECKOUT"):
            cart.clear()
    return carts


def test_a_removal_leaves_cdps_cart_equal_to_ordercloud_s(stack):
    gateway, sitecore, _ = stack
    shop = Storefront(gateway)
    shop.grant(grant_type="client_credentials")
    lines = [
        shop("POST", "/v1/cart/lineitems", 201, json={"ProductID": p, "Quantity": q}).json()
        for p, q in (("p-001", 1), ("p-002", 2), ("p-003", 1))
    ]
    shop("PATCH", f"/v1/cart/lineitems/{lines[2]['ID']}", 200, json={"Quantity": 4})
    shop("DELETE", f"/v1/cart/lineitems/{lines[1]['ID']}", 204)

    def ordercloud_cart() -> dict[str, int]:
        items = shop("GET", "/v1/cart/lineitems", 200).json()["Items"]
        return {line["ID"]: line["Quantity"] for line in items}

    def cdp_cart() -> dict[str, int] | None:
        carts = cdp_carts(sitecore)
        types = [e["type"] for e in sitecore.json("/cdp/v1.2/events")]
        return next(iter(carts.values())) if len(carts) == 1 and "CLEAR_CART" in types else None

    expected = {lines[0]["ID"]: 1, lines[2]["ID"]: 4}
    assert ordercloud_cart() == expected
    assert wait_for(lambda: cdp_cart() == expected), cdp_carts(sitecore)
    sequence = [e["type"] for e in sitecore.json("/cdp/v1.2/events")]
    assert sequence[-3:] == ["CLEAR_CART", "ADD", "ADD"]  # the removal, restated

    # The last lines go: CLEAR_CART alone, and CDP's cart is empty like OrderCloud's.
    for line in (lines[0], lines[2]):
        shop("DELETE", f"/v1/cart/lineitems/{line['ID']}", 204)
    assert ordercloud_cart() == {}
    assert wait_for(
        lambda: (
            [e["type"] for e in sitecore.json("/cdp/v1.2/events")][-1:] == ["CLEAR_CART"]
            and sum(1 for e in sitecore.json("/cdp/v1.2/events") if e["type"] == "CLEAR_CART") == 3
        )
    )
    assert cdp_cart() == {}

    # Discover heard the removals as the cart's status; Send as quantity -1.
    def discover_carts() -> list[list[dict]]:
        sent = [
            json.loads(parse_qs(r["body"].decode())["data"][0])
            for r in sitecore.received("/discover/events")
        ]
        return [s["value"]["products"] for s in sent if s["type"] == "status"]

    def send_removals() -> int:
        return sum(
            b["properties"][0]["product"]["itemQuantity"] == -1
            for b in sitecore.json("/send")
            if b["actionType"] == "ADDED_TO_ORDER"
        )

    assert wait_for(lambda: len(discover_carts()) == 3 and send_removals() == 3)
    first, *_, last = discover_carts()
    assert [(p["sku"], p["quantity"]) for p in first] == [("p-001", 1), ("p-003", 4)]
    assert last == []
