"""The demo tables against the local OrderCloud sandbox: the rewritten queries are ones the sandbox
understands, and a repeat customer and a newcomer get different product and promotion lists."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.datastructures import Headers

from decisions.service import DecisionService
from gateway import compose
from gateway.call import Call
from gateway.identity import Visitor
from gateway.operations import recognise
from gateway.sandbox import create_app
from gateway.sandbox.catalog import JANE, JOE
from gateway.settings import Settings
from state.profiles import Profile
from tests.shoppers import login_async

pytestmark = pytest.mark.anyio
EXAMPLE = Path(__file__).parent.parent / "examples" / "decisions.yaml"


# What the tracker would know: Jane's three orders, Joe's none.
PROFILES = (
    Profile("acme-jane", anonymous=False, buyer_id="acme", orders=3, spent=612.0),
    Profile("acme-joe", anonymous=False, buyer_id="acme"),
)


@pytest.fixture
async def sandbox() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox.test") as http:
        yield http


async def token(sandbox: httpx.AsyncClient, username: str, password: str) -> str:
    return await login_async(sandbox, username, password, scope="Shopper MeAdmin")


async def listed(
    service: DecisionService,
    sandbox: httpx.AsyncClient,
    user: str,
    password: str,
    path: str,
    query: str = "",
) -> tuple[list[dict], str | None]:
    """What the shopper would see through the gateway: the items and the X-Decision value."""
    bearer = await token(sandbox, user, password)
    visitor = Visitor(f"acme-{user}", anonymous=False, buyer_id="acme")
    call = Call(
        recognise("GET", path),
        "GET",
        path,
        query,
        Headers({}),
        "127.0.0.1",
        bearer,
        visitor,
        time.time(),
    )
    decision = await service.decide(call)
    sent = decision.query if decision else query
    answer = await sandbox.get(
        f"{path}?{sent}" if sent else path, headers={"Authorization": f"Bearer {bearer}"}
    )
    assert answer.status_code == 200, (sent, answer.text)
    body = answer.content
    if decision and decision.reorder:
        body = decision.reorder(body)
    return json.loads(body)["Items"], decision.header if decision else None


def ids(items: list[dict]) -> list[str]:
    return [item["ID"] for item in items]


async def test_repeat_customer_and_newcomer_see_different_lists(
    tmp_path: Path, sandbox: httpx.AsyncClient
) -> None:
    settings = Settings(store=tmp_path / "gw.db", decisions=EXAMPLE)
    state = await compose.open_store(settings)
    for profile in PROFILES:
        await state.profiles.update(profile.visitor_id, lambda _, p=profile: p)
    service = compose.decider(settings, state, sandbox)
    await service.start()
    try:
        jane_products, jane_why = await listed(
            service, sandbox, JANE.username, JANE.password, "/v1/me/products", "page=1"
        )
        joe_products, joe_why = await listed(
            service, sandbox, JOE.username, JOE.password, "/v1/me/products", "page=1"
        )
        jane_promos, _ = await listed(
            service, sandbox, JANE.username, JANE.password, "/v1/me/promotions"
        )
        joe_promos, _ = await listed(
            service, sandbox, JOE.username, JOE.password, "/v1/me/promotions"
        )
        everyone, _ = await listed(
            service, sandbox, JANE.username, JANE.password, "/v1/me/products", "search=Chronograph"
        )  # the shopper searched: vip-watches steps aside
    finally:
        await service.stop()

    assert ids(joe_products) == ["p-001", "p-007", "p-013", "p-021"]  # pinned, in pin order
    assert joe_why == "table=featured-products;rule=newcomer-picks;variant=default;version=1"
    assert jane_why == "table=featured-products;rule=vip-watches;variant=default;version=1"
    bearer = await token(sandbox, JOE.username, JOE.password)
    watches = await sandbox.get(
        "/v1/me/products?categoryID=mens-watches&pageSize=100",
        headers={"Authorization": f"Bearer {bearer}"},
    )
    assert jane_products and set(ids(jane_products)) <= set(ids(watches.json()["Items"]))
    popularity = [p["xp"]["popularity"] for p in jane_products]
    assert popularity == sorted(popularity, reverse=True)
    assert {p["xp"]["targetAudience"] for p in jane_promos} == {"repeatCustomer", "vip", "all"}
    assert {p["xp"]["targetAudience"] for p in joe_promos} == {"newVisitor", "all"}
    assert everyone and ids(everyone) != ids(jane_products)


async def test_sandbox_audiences_match_the_demo_filters(sandbox: httpx.AsyncClient) -> None:
    bearer = await token(sandbox, JOE.username, JOE.password)
    answer = await sandbox.get("/v1/me/promotions", headers={"Authorization": f"Bearer {bearer}"})
    audiences = {p["xp"]["targetAudience"] for p in answer.json()["Items"]}
    assert audiences == {"all", "newVisitor", "repeatCustomer", "vip"}
    categories = await sandbox.get(
        "/v1/me/categories?depth=all", headers={"Authorization": f"Bearer {bearer}"}
    )
    ids = {c["ID"] for c in categories.json()["Items"]}
    assert {"mens-watches", "womens-watches"} <= ids
