"""The sandbox's admin client: client credentials with a secret, and the seller's order lists."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.sandbox import create_app
from gateway.sandbox.catalog import ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, JANE
from tests.test_sandbox import BASE, login

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
        yield http


async def admin_headers(client: httpx.AsyncClient) -> dict[str, str]:
    form = {
        "grant_type": "client_credentials",
        "client_id": ADMIN_CLIENT_ID,
        "client_secret": ADMIN_CLIENT_SECRET,
    }
    answer = await client.post("/oauth/token", data=form)
    assert answer.status_code == 200, answer.text
    assert answer.json()["refresh_token"] is None
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


async def test_admin_client_needs_its_secret_and_the_client_credentials_grant(client) -> None:
    wrong = {"grant_type": "client_credentials", "client_id": ADMIN_CLIENT_ID, "client_secret": "x"}
    answer = await client.post("/oauth/token", data=wrong)
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_client"
    password = {
        "grant_type": "password",
        "client_id": ADMIN_CLIENT_ID,
        "client_secret": ADMIN_CLIENT_SECRET,
        "username": "jane",
        "password": "jane-pass",
    }
    assert (await client.post("/oauth/token", data=password)).status_code == 400


async def test_admin_lists_every_submitted_order_by_date_with_paging(client) -> None:
    headers = await admin_headers(client)
    joe = await login(client, "joe", "joe-pass")
    await client.post("/v1/cart/lineitems", headers=joe, json={"ProductID": "p-002"})  # unsubmitted
    query = {"sortBy": "DateSubmitted", "pageSize": 3}
    first = (await client.get("/v1/orders/Incoming", headers=headers, params=query)).json()
    assert first["Meta"]["TotalCount"] == 4 and first["Meta"]["TotalPages"] == 2
    second = (
        await client.get("/v1/orders/all", headers=headers, params={**query, "page": 2})
    ).json()
    orders = first["Items"] + second["Items"]
    assert [o["ID"] for o in orders] == ["jane-0001", "jane-0002", "gina-0001", "jane-0003"]
    assert all(order["IsSubmitted"] for order in orders)
    dates = [order["DateSubmitted"] for order in orders]
    assert dates == sorted(dates)
    window = {"DateSubmitted": f">{dates[0]}", "sortBy": "DateSubmitted"}
    later = (await client.get("/v1/orders/Incoming", headers=headers, params=window)).json()
    assert [o["ID"] for o in later["Items"]] == ["jane-0002", "gina-0001", "jane-0003"]
    outgoing = (await client.get("/v1/orders/Outgoing", headers=headers)).json()
    assert outgoing["Meta"]["TotalCount"] == 0


async def test_admin_reads_line_items_of_any_submitted_order_and_nothing_else(client) -> None:
    headers = await admin_headers(client)
    lines = (await client.get("/v1/orders/Incoming/jane-0001/lineitems", headers=headers)).json()
    assert [(line["ProductID"], line["Quantity"]) for line in lines["Items"]] == [
        ("p-001", 1),
        ("p-016", 2),
    ]
    missing = await client.get("/v1/orders/Incoming/nope/lineitems", headers=headers)
    assert missing.status_code == 404
    me = await client.get("/v1/me", headers=headers)
    assert me.status_code == 403 and me.json()["Errors"][0]["ErrorCode"] == "InsufficientRoles"
    jane = await login(client, JANE.username, JANE.password)
    assert (await client.get("/v1/orders/Incoming", headers=jane)).json()["Items"] == []
