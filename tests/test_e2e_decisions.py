"""Decision tables end to end: storefront calls through the gateway to the sandbox."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

import httpx
import pytest

from gateway.app import Gateway, create_app
from gateway.sandbox import create_app as create_sandbox
from gateway.sandbox.catalog import CLIENT_ID
from gateway.serving import serve_in_thread as running
from gateway.settings import Settings
from tests.servers import wait_for

pytestmark = pytest.mark.e2e
DEMO_TABLES = files("decisions").joinpath("demo.yaml").read_text()
ADMIN = {"Authorization": "Bearer admin-secret"}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[str, Gateway]]:
    tables = tmp_path / "tables.yaml"
    tables.write_text(DEMO_TABLES)
    with running(create_sandbox()) as sandbox:
        settings = Settings(
            upstream_url=sandbox,
            store=tmp_path / "gw.db",  # type: ignore[arg-type]
            events_file=tmp_path / "events.jsonl",
            decisions=tables,
            admin_token="admin-secret",
        )
        app = create_app(settings)
        with running(app, lifespan="on") as gateway:
            yield gateway, app


def login(gateway: str, username: str) -> dict[str, str]:
    answer = httpx.post(
        gateway + "/oauth/token",
        data={
            "grant_type": "password",
            "client_id": CLIENT_ID,
            "username": username,
            "password": f"{username}-pass",
            "scope": "Shopper",
        },
    ).json()
    return {"Authorization": f"Bearer {answer['access_token']}"}


def ids(response: httpx.Response) -> list[str]:
    return [item["ID"] for item in response.json()["Items"]]


def test_repeat_customer_and_newcomer_get_different_lists(stack):
    gateway, _ = stack
    joe = login(gateway, "joe")
    gus = login(gateway, "gus")
    for _ in range(2):  # gus becomes a repeat customer through what the gateway sees
        httpx.post(
            gateway + "/v1/cart/lineitems", headers=gus, json={"ProductID": "p-002", "Quantity": 1}
        ).raise_for_status()
        httpx.post(gateway + "/v1/cart/submit", headers=gus).raise_for_status()

    def gus_promotions() -> httpx.Response | None:
        response = httpx.get(gateway + "/v1/me/promotions", headers=gus)
        return response if "rule=repeat-offers" in response.headers.get("x-decision", "") else None

    gus_promos = wait_for(gus_promotions)
    assert gus_promos is not None, "gus never became a repeat customer"
    joe_promos = httpx.get(gateway + "/v1/me/promotions", headers=joe)
    assert "rule=welcome-offers" in joe_promos.headers["x-decision"]
    audiences = {p["ID"]: p["xp"]["targetAudience"] for p in gus_promos.json()["Items"]}
    assert "repeatCustomer" in audiences.values()
    assert {p["xp"]["targetAudience"] for p in joe_promos.json()["Items"]} <= {"newVisitor", "all"}
    assert set(ids(gus_promos)) != set(ids(joe_promos))

    joe_products = httpx.get(gateway + "/v1/me/products?pageSize=4", headers=joe)
    gus_products = httpx.get(gateway + "/v1/me/products?pageSize=4", headers=gus)
    assert "rule=newcomer-picks" in joe_products.headers["x-decision"]
    assert ids(joe_products) == ["p-001", "p-007", "p-013", "p-021"]  # pinned order kept
    assert "rule=vip-watches" in gus_products.headers["x-decision"]
    assert ids(gus_products) != ids(joe_products)
    for response in (joe_products, gus_products, joe_promos, gus_promos):
        assert response.headers["cache-control"] == "private, no-store"
        assert int(response.headers["content-length"]) == len(response.content)


def test_shoppers_explicit_parameters_are_not_overridden(stack):
    gateway, _ = stack
    joe = login(gateway, "joe")
    response = httpx.get(gateway + "/v1/me/products?categoryID=rings", headers=joe)
    assert "x-decision" not in response.headers
    assert response.json()["Items"]


def test_admin_publish_changes_the_next_response_and_a_bad_edit_keeps_the_old(stack):
    gateway, _ = stack
    joe = login(gateway, "joe")
    assert ids(httpx.get(gateway + "/v1/me/products?pageSize=4", headers=joe))[0] == "p-001"

    edited = DEMO_TABLES.replace("pin: [p-001, p-007, p-013, p-021]", "pin: [p-050, p-002]")
    assert httpx.post(gateway + "/admin/publish", content=edited).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert httpx.post(gateway + "/admin/publish", content=edited, headers=wrong).status_code == 401
    published = httpx.post(gateway + "/admin/publish", content=edited, headers=ADMIN)
    assert published.status_code == 201, published.text

    after = httpx.get(gateway + "/v1/me/products?pageSize=4", headers=joe)
    assert ids(after) == ["p-050", "p-002"]
    version = after.headers["x-decision"].rsplit("version=", 1)[1]

    broken = edited.replace("pageSize: 12", "pageSize: 1000")
    rejected = httpx.post(gateway + "/admin/publish", content=broken, headers=ADMIN)
    assert rejected.status_code in (400, 422)
    assert "vip-sale" in rejected.text and "pageSize" in rejected.text
    still = httpx.get(gateway + "/v1/me/products?pageSize=4", headers=joe)
    assert ids(still) == ["p-050", "p-002"]
    assert still.headers["x-decision"].endswith(f"version={version}")


def test_a_failing_decision_fails_open(stack, monkeypatch):
    gateway, app = stack
    joe = login(gateway, "joe")

    def broken(*args, **kwargs):
        raise RuntimeError("segment store exploded")

    monkeypatch.setattr("decisions.service.evaluate", broken)
    response = httpx.get(gateway + "/v1/me/products?pageSize=4", headers=joe)
    assert response.status_code == 200
    assert "x-decision" not in response.headers
    assert len(response.json()["Items"]) == 4
    assert app.proxy.counters["decisions_failures"] >= 1  # counted once, by the proxy


def report(app) -> list[dict]:
    """The experiment report from the gateway's own state (SQLite reads work from any loop)."""
    return asyncio.run(app.state.exposures.report())


def test_experiment_report_counts_exposures_and_conversions(stack):
    gateway, app = stack
    joe = login(gateway, "joe")
    assert (
        "newcomer-picks"
        in httpx.get(gateway + "/v1/me/products", headers=joe).headers["x-decision"]
    )
    httpx.post(
        gateway + "/v1/cart/lineitems", headers=joe, json={"ProductID": "p-001", "Quantity": 2}
    ).raise_for_status()
    total = httpx.post(gateway + "/v1/cart/submit", headers=joe).json()["Total"]

    def joes_row():
        rows = {(r["table_id"], r["rule_id"]): r for r in report(app)}
        row = rows.get(("featured-products", "newcomer-picks"))
        return row if row and row["orders"] else None

    row = wait_for(joes_row)
    assert row is not None, report(app)
    assert (row["exposures"], row["visitors"], row["converted"], row["orders"]) == (1, 1, 1, 1)
    assert row["revenue"] == pytest.approx(total)


def test_with_tracking_off_exposures_stay_in_the_report_and_nothing_is_delivered(tmp_path):
    tables = tmp_path / "tables.yaml"
    tables.write_text(DEMO_TABLES)
    events = tmp_path / "events.jsonl"
    with running(create_sandbox()) as sandbox:
        settings = Settings(
            upstream_url=sandbox,
            store=tmp_path / "gw.db",  # type: ignore[arg-type]
            events_file=events,
            decisions=tables,
            tracking=False,
        )
        app = create_app(settings)
        with running(app, lifespan="on") as gateway:
            joe = login(gateway, "joe")
            response = httpx.get(gateway + "/v1/me/products", headers=joe)
            assert "newcomer-picks" in response.headers["x-decision"]
            assert wait_for(lambda: report(app))
    assert not events.exists() or events.read_text() == ""
