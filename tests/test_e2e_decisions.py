"""Decision tables end to end: storefront calls through the gateway to the sandbox."""

from __future__ import annotations

import asyncio
import json
import time
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
from tests.fake_sitecore import FakeSitecore
from tests.servers import wait_for
from tests.shoppers import bearer, login

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


def shopper(gateway: str, username: str) -> dict[str, str]:
    return bearer(login(gateway, username))


def ids(response: httpx.Response) -> list[str]:
    return [item["ID"] for item in response.json()["Items"]]


def test_repeat_customer_and_newcomer_get_different_lists(stack):
    gateway, _ = stack
    joe = shopper(gateway, "joe")
    gus = shopper(gateway, "gus")
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
    joe = shopper(gateway, "joe")
    response = httpx.get(gateway + "/v1/me/products?categoryID=rings", headers=joe)
    assert "x-decision" not in response.headers
    assert response.json()["Items"]


def test_admin_publish_changes_the_next_response_and_a_bad_edit_keeps_the_old(stack):
    gateway, _ = stack
    joe = shopper(gateway, "joe")
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
    joe = shopper(gateway, "joe")

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
    joe = shopper(gateway, "joe")
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
            joe = shopper(gateway, "joe")
            response = httpx.get(gateway + "/v1/me/products", headers=joe)
            assert "newcomer-picks" in response.headers["x-decision"]
            assert wait_for(lambda: report(app))
    assert not events.exists() or events.read_text() == ""


def slow_history(app, seconds: float):
    """The sandbox, with the shopper's order history (`GET /v1/me/orders`) answered late: a login's
    hydration then outlasts the storefront's next call, as against a real OrderCloud."""

    async def wrapped(scope, receive, send):
        if scope["type"] == "http" and scope["path"].lower() == "/v1/me/orders":
            await asyncio.sleep(seconds)
        await app(scope, receive, send)

    return wrapped


def test_a_repeat_customers_first_list_call_right_after_login_sees_her_history(tmp_path):
    """jane's order history is read by the login's hydration in the background; her first list
    call, made as soon as the login answers, waits for it (within the budget) instead of being
    decided on an empty profile, and the exposure is hers."""
    tables = tmp_path / "tables.yaml"
    tables.write_text(DEMO_TABLES)
    with running(slow_history(create_sandbox(), 0.2)) as sandbox:
        settings = Settings(
            upstream_url=sandbox,
            store=tmp_path / "gw.db",  # type: ignore[arg-type]
            events_file=tmp_path / "events.jsonl",
            decisions=tables,
            personalize_timeout_ms=500,  # the history takes 200 ms; a busy test machine more
        )
        app = create_app(settings)
        with running(app, lifespan="on") as gateway:
            jane = shopper(gateway, "jane")
            started = time.perf_counter()
            response = httpx.get(gateway + "/v1/me/products?pageSize=4", headers=jane)
            elapsed = time.perf_counter() - started
            decided = response.headers["x-decision"]
            assert "rule=vip-watches" in decided, decided
            assert app.decisions.stats["login_waits"] == 1
            assert elapsed < 0.5 + 0.3, elapsed  # the budget, plus the call itself
            rows = wait_for(lambda: [r for r in report(app) if r["rule_id"] == "vip-watches"])
            assert rows and rows[0]["visitors"] == 1
            assert not [r for r in report(app) if r["rule_id"] == "newcomer-picks"]


CDP_TABLES = """
segments:
  cdp-vip: { cdp: VIP }
tables:
  - id: featured
    applies_to: me/products
    rules:
      - id: vip-sale
        when: { segment: cdp-vip }
        then: { filters: { xp.sale: true } }
"""


def test_callflows_names_the_identified_guest_right_after_login(tmp_path):
    """The flow answers per guest: VIP for the identified jane, nothing for her anonymous
    browser. Her first list call after logging in is decided by the identified guest's segments,
    not by a cached answer for the browser she used before."""
    tables = tmp_path / "tables.yaml"
    tables.write_text(CDP_TABLES)
    sitecore = FakeSitecore()
    sitecore.segments["ordercloud:acme-jane"] = ["VIP"]
    with running(sitecore) as sink, running(create_sandbox()) as sandbox:
        settings = Settings(
            upstream_url=sandbox,
            store=tmp_path / "gw.db",  # type: ignore[arg-type]
            decisions=tables,
            cdp_url=f"{sink}/cdp",
            cdp_client_key="ck-test",
            cdp_pos="shop.example",  # type: ignore[arg-type]
            personalize_flow="segments_flow",
            personalize_timeout_ms=400,  # loopback, but a cold client and a busy test machine
        )
        with running(create_app(settings), lifespan="on") as gateway:
            browser = {"X-Browser-Id": "bid-jane-laptop", "User-Agent": "Mozilla/5.0 (Jane)"}
            anon = httpx.post(
                gateway + "/oauth/token",
                data={"grant_type": "client_credentials", "client_id": CLIENT_ID},
            ).json()["access_token"]
            before = httpx.get(
                gateway + "/v1/me/products",
                headers={**browser, "Authorization": f"Bearer {anon}"},
            )
            assert "x-decision" not in before.headers  # the anonymous browser is no VIP
            jane = shopper(gateway, "jane")
            after = httpx.get(gateway + "/v1/me/products", headers={**browser, **jane})
            assert "rule=vip-sale" in after.headers.get("x-decision", ""), after.headers
            flows = sitecore.received("/cdp/v2/callFlows")
    bodies = [json.loads(r["body"]) for r in flows]
    assert bodies[0]["browserId"] == "bid-jane-laptop" and "identifiers" not in bodies[0]
    assert bodies[-1]["identifiers"] == {"provider": "ordercloud", "id": "acme-jane"}
    assert "browserId" not in bodies[-1]
    assert flows[-1]["headers"]["user-agent"] == "Mozilla/5.0 (Jane)"
