"""The sandbox's orders, line items, cart, transfer, register and ownership rules over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import jwt
import pytest

from gateway.sandbox import create_app
from gateway.sandbox.catalog import GINA, JANE, JOE, NEWCOMER, REPEAT_CUSTOMER
from tests.test_sandbox import BASE, anonymous_token, bearer, login

pytestmark = pytest.mark.anyio
JSON_EMPTY = {"Content-Type": "application/json", "Content-Length": "0"}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
        yield http


async def price(client: httpx.AsyncClient, headers: dict, product_id: str) -> float:
    product = (await client.get(f"/v1/me/products/{product_id}", headers=headers)).json()
    schedule = product["PriceSchedule"]
    tier = schedule["PriceBreaks"][0]
    return tier["SalePrice"] if schedule["IsOnSale"] else tier["Price"]


# Seeded history ----------------------------------------------------------------------------


async def test_repeat_customer_has_submitted_orders_worth_500_and_newcomer_none(client) -> None:
    jane = await login(client, REPEAT_CUSTOMER.username, REPEAT_CUSTOMER.password)
    history = (await client.get("/v1/me/orders", headers=jane)).json()
    assert history["Meta"]["TotalCount"] >= 2
    assert all(order["Status"] == "Open" and order["IsSubmitted"] for order in history["Items"])
    assert sum(order["Total"] for order in history["Items"]) >= 500
    dates = [order["DateCreated"] for order in history["Items"]]
    assert dates == sorted(dates, reverse=True)  # newest first
    assert all(
        order["FromUserID"] == "jane" and order["Currency"] == "USD" for order in history["Items"]
    )
    lines = (
        await client.get(f"/v1/orders/Outgoing/{history['Items'][0]['ID']}/lineitems", headers=jane)
    ).json()
    assert lines["Items"] and lines["Items"][0]["Product"]["Name"]
    joe = await login(client, NEWCOMER.username, NEWCOMER.password)
    assert (await client.get("/v1/me/orders", headers=joe)).json()["Meta"]["TotalCount"] == 0
    gina = await login(client, GINA.username, GINA.password)
    assert (await client.get("/v1/me/orders", headers=gina)).json()["Items"][0]["Currency"] == "EUR"


# Orders and line items ---------------------------------------------------------------------


async def test_order_lifecycle_with_totals_and_submit(client) -> None:
    joe = await login(client, JOE.username, JOE.password)
    created = await client.post("/v1/orders/Outgoing", headers=joe, json={"xp": {"channel": "web"}})
    assert created.status_code == 201
    order = created.json()
    assert order["Status"] == "Unsubmitted" and order["IsSubmitted"] is False
    assert (
        order["FromUserID"] == "joe" and order["Total"] == 0 and order["xp"] == {"channel": "web"}
    )
    base = f"/v1/orders/outgoing/{order['ID']}"

    empty = await client.post(f"{base}/submit", headers={**joe, **JSON_EMPTY})
    assert empty.status_code == 400
    assert empty.json()["Errors"][0]["ErrorCode"] == "Order.CannotSubmitWithNoLineItems"

    added = await client.post(
        f"{base}/lineitems", headers=joe, json={"ProductID": "p-001", "Quantity": 2}
    )
    assert added.status_code == 201
    line = added.json()
    unit = await price(client, joe, "p-001")
    assert line["ID"] and line["UnitPrice"] == unit
    assert line["LineSubtotal"] == line["LineTotal"] == round(unit * 2, 2)
    assert line["Product"]["ID"] == "p-001" and "PriceSchedule" not in line["Product"]
    assert line["Product"]["xp"]["brand"] and line["DateAdded"]

    second = await client.post(
        f"{base}/lineitems",
        headers=joe,
        json={"ID": "gift", "ProductID": "p-008", "Quantity": 1, "xp": {"wrap": True}},
    )
    assert second.status_code == 201 and second.json()["ID"] == "gift"
    duplicate = await client.post(
        f"{base}/lineitems", headers=joe, json={"ID": "gift", "ProductID": "p-008"}
    )
    assert duplicate.status_code == 409

    patched = await client.patch(
        f"{base}/lineitems/gift", headers=joe, json={"Quantity": 3, "xp": {"note": "hi"}}
    )
    assert patched.status_code == 200
    assert patched.json()["Quantity"] == 3 and patched.json()["xp"] == {"wrap": True, "note": "hi"}
    saved = await client.put(
        f"{base}/lineitems/gift", headers=joe, json={"ProductID": "p-009", "Quantity": 1}
    )
    assert (
        saved.status_code == 200
        and saved.json()["ProductID"] == "p-009"
        and saved.json()["xp"] is None
    )

    current = (await client.get(base, headers=joe)).json()
    lines = (await client.get(f"{base}/lineitems", headers=joe)).json()["Items"]
    assert current["LineItemCount"] == len(lines) == 2
    assert current["Subtotal"] == current["Total"] == round(sum(li["LineTotal"] for li in lines), 2)

    assert (await client.delete(f"{base}/lineitems/gift", headers=joe)).status_code == 204
    missing = await client.get(f"{base}/lineitems/gift", headers=joe)
    assert missing.status_code == 404
    assert missing.json()["Errors"][0]["Data"] == {"ObjectType": "LineItem", "ObjectID": "gift"}
    assert (await client.get(base, headers=joe)).json()["Total"] == line["LineTotal"]

    submitted = await client.post(f"{base}/submit", headers={**joe, **JSON_EMPTY})
    assert submitted.status_code == 201
    body = submitted.json()
    assert body["Status"] == "Open" and body["IsSubmitted"] is True and body["DateSubmitted"]
    again = await client.post(f"{base}/submit", headers=joe)
    assert (
        again.status_code == 400
        and again.json()["Errors"][0]["ErrorCode"] == "Order.CannotSubmitBadStatus"
    )
    locked = await client.post(f"{base}/lineitems", headers=joe, json={"ProductID": "p-001"})
    assert locked.status_code == 400
    assert (await client.delete(base, headers=joe)).status_code == 400


async def test_order_patch_delete_and_direction_case(client) -> None:
    joe = await login(client, JOE.username, JOE.password)
    order = (await client.post("/v1/orders/OUTGOING", headers={**joe, **JSON_EMPTY})).json()
    patched = await client.patch(
        f"/v1/orders/All/{order['ID']}", headers=joe, json={"Comments": "leave at door"}
    )
    assert patched.json()["Comments"] == "leave at door"
    assert (await client.get(f"/v1/orders/incoming/{order['ID']}", headers=joe)).status_code == 404
    listed = (await client.get("/v1/orders/outgoing?Status=Unsubmitted", headers=joe)).json()
    assert [o["ID"] for o in listed["Items"]] == [order["ID"]]
    assert (
        await client.delete(f"/v1/orders/outgoing/{order['ID']}", headers=joe)
    ).status_code == 204
    assert (await client.get(f"/v1/orders/outgoing/{order['ID']}", headers=joe)).status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"ProductID": "nope"}, 404, "NotFound"),
        ({"ProductID": "p-001", "Quantity": 0}, 400, "LineItem.QuantityMustBePositive"),
        ({"ProductID": "p-001", "Quantity": "2"}, 400, "ValidationFailure"),
        ({"Quantity": 1}, 400, "ValidationFailure"),
    ],
)
async def test_line_item_validation(client, body, status, code) -> None:
    headers = bearer(await anonymous_token(client))
    response = await client.post("/v1/cart/lineitems", headers=headers, json=body)
    assert response.status_code == status
    assert response.json()["Errors"][0]["ErrorCode"] == code


async def test_shopper_cannot_touch_someone_elses_order(client) -> None:
    jane = await login(client, JANE.username, JANE.password)
    joe = await login(client, JOE.username, JOE.password)
    order_id = (await client.get("/v1/me/orders", headers=jane)).json()["Items"][0]["ID"]
    for method, suffix in (("GET", ""), ("DELETE", ""), ("GET", "/lineitems"), ("POST", "/submit")):
        response = await client.request(
            method, f"/v1/orders/outgoing/{order_id}{suffix}", headers=joe
        )
        assert response.status_code == 404, (method, suffix)
        assert response.json()["Errors"][0]["Data"] == {"ObjectType": "Order", "ObjectID": order_id}
    anonymous = bearer(await anonymous_token(client))
    assert (
        await client.get(f"/v1/orders/outgoing/{order_id}", headers=anonymous)
    ).status_code == 404
    stolen = await client.post(
        f"/v1/orders/outgoing/{order_id}/lineitems", headers=anonymous, json={"ProductID": "p-001"}
    )
    assert stolen.status_code == 404


# Anonymous shoppers, cart, transfer, register ----------------------------------------------


async def test_anonymous_order_id_is_created_on_first_line_item(client) -> None:
    token = await anonymous_token(client)
    headers = bearer(token)
    order_id = jwt.decode(token["access_token"], options={"verify_signature": False})["orderid"]
    assert (await client.get(f"/v1/orders/outgoing/{order_id}", headers=headers)).status_code == 404
    added = await client.post(
        f"/v1/orders/outgoing/{order_id}/lineitems", headers=headers, json={"ProductID": "p-010"}
    )
    assert added.status_code == 201
    order = (await client.get(f"/v1/orders/outgoing/{order_id}", headers=headers)).json()
    assert order["ID"] == order_id and order["LineItemCount"] == 1
    assert order["FromUser"]["Username"] == "anon-template"
    assert (await client.get("/v1/cart", headers=headers)).json()["ID"] == order_id


async def test_cart_routes(client) -> None:
    headers = bearer(await anonymous_token(client))
    empty = (await client.get("/v1/cart", headers=headers)).json()
    assert empty["ID"] is None and empty["LineItemCount"] == 0
    assert (await client.get("/v1/cart/lineitems", headers=headers)).json()["Items"] == []
    assert (
        await client.patch("/v1/cart/lineitems/x", headers=headers, json={"Quantity": 2})
    ).status_code == 404

    line = (
        await client.post("/v1/cart/lineitems", headers=headers, json={"ProductID": "p-002"})
    ).json()
    cart = (await client.get("/v1/cart", headers=headers)).json()
    assert cart["ID"] and cart["Total"] == line["LineTotal"]
    assert (await client.get(f"/v1/Cart/LineItems/{line['ID']}", headers=headers)).json()[
        "ProductID"
    ] == "p-002"
    patched = (
        await client.patch(
            f"/v1/cart/lineitems/{line['ID']}", headers=headers, json={"Quantity": 4}
        )
    ).json()
    assert patched["Quantity"] == 4
    put = await client.put(
        "/v1/cart/lineitems/extra", headers=headers, json={"ProductID": "p-003", "Quantity": 1}
    )
    assert put.status_code == 200
    cart = (await client.get("/v1/cart", headers=headers)).json()
    assert cart["LineItemCount"] == 2 and cart["Subtotal"] == round(
        patched["LineTotal"] + put.json()["LineTotal"], 2
    )
    assert (await client.delete("/v1/cart/lineitems/extra", headers=headers)).status_code == 204

    submitted = await client.post("/v1/cart/submit", headers={**headers, **JSON_EMPTY})
    assert submitted.status_code == 201 and submitted.json()["ID"] == cart["ID"]
    assert (await client.get("/v1/cart", headers=headers)).json()["ID"] is None
    nothing = await client.post("/v1/cart/submit", headers=headers)
    assert nothing.status_code == 400

    (await client.post("/v1/cart/lineitems", headers=headers, json={"ProductID": "p-004"}))
    assert (await client.delete("/v1/cart", headers=headers)).status_code == 204
    assert (await client.get("/v1/cart", headers=headers)).json()["ID"] is None


async def test_transfer_moves_the_anonymous_cart_to_the_user(client) -> None:
    anon = await anonymous_token(client)
    await client.post(
        "/v1/cart/lineitems", headers=bearer(anon), json={"ProductID": "p-005", "Quantity": 2}
    )
    joe = await login(client, JOE.username, JOE.password)
    response = await client.put(
        f"/v1/me/orders?anonUserToken={anon['access_token']}", headers={**joe, **JSON_EMPTY}
    )
    assert response.status_code == 204 and response.content == b""
    cart = (await client.get("/v1/cart", headers=joe)).json()
    assert cart["FromUserID"] == "joe" and cart["LineItemCount"] == 1
    lines = (await client.get("/v1/cart/lineitems", headers=joe)).json()["Items"]
    assert [(li["ProductID"], li["Quantity"]) for li in lines] == [("p-005", 2)]
    assert (await client.get("/v1/cart", headers=bearer(anon))).json()["ID"] is None
    submitted = await client.post("/v1/cart/submit", headers=joe)
    assert submitted.status_code == 201
    assert (await client.get("/v1/me/orders", headers=joe)).json()["Meta"]["TotalCount"] == 1


@pytest.mark.parametrize(
    "query", ["", "?anonUserToken=", "?anonUserToken=garbage", "password-token"]
)
async def test_transfer_needs_a_valid_anonymous_token(client, query) -> None:
    joe = await login(client, JOE.username, JOE.password)
    if query == "password-token":
        query = "?anonUserToken=" + joe["Authorization"].split()[1]
    response = await client.put(f"/v1/me/orders{query}", headers=joe)
    assert response.status_code == 400
    assert response.json()["Errors"][0]["ErrorCode"]


async def test_register_creates_a_user_and_hands_over_the_cart(client) -> None:
    anon = await anonymous_token(client)
    await client.post("/v1/cart/lineitems", headers=bearer(anon), json={"ProductID": "p-006"})
    me = {
        "Username": "newbie",
        "Password": "newbie-pass",
        "FirstName": "New",
        "LastName": "Bie",
        "Email": "newbie@acme.example",
        "Active": True,
    }
    response = await client.put(
        f"/v1/me/register?anonUserToken={anon['access_token']}", headers=bearer(anon), json=me
    )
    assert response.status_code == 200
    token = response.json()
    assert token["access_token"]
    claims = jwt.decode(token["access_token"], options={"verify_signature": False})
    assert claims["usr"] == "newbie" and "orderid" not in claims
    user = (await client.get("/v1/me", headers=bearer(token))).json()
    assert user["Username"] == "newbie" and user["Buyer"]["ID"] == "acme"
    lines = (await client.get("/v1/cart/lineitems", headers=bearer(token))).json()["Items"]
    assert [li["ProductID"] for li in lines] == ["p-006"]
    assert await login(client, "newbie", "newbie-pass")  # the new password works
    taken = await client.put(
        f"/v1/me/register?anonUserToken={anon['access_token']}", headers=bearer(anon), json=me
    )
    assert taken.status_code == 409
    incomplete = await client.put(
        f"/v1/me/register?anonUserToken={anon['access_token']}",
        headers=bearer(anon),
        json={"Username": "x"},
    )
    assert incomplete.status_code == 400


async def test_sandboxes_are_isolated() -> None:
    async def cart_count(app) -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
            joe = await login(http, JOE.username, JOE.password)
            await http.post("/v1/cart/lineitems", headers=joe, json={"ProductID": "p-001"})
            return (await http.get("/v1/cart", headers=joe)).json()["LineItemCount"]

    assert await cart_count(create_app()) == 1
    assert await cart_count(create_app()) == 1
