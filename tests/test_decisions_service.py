"""DecisionService: decide() end to end (no network), fail open, exposures and report, CDP
segments within the budget, hot reload of good and bad files, publish and rollback."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from starlette.datastructures import Headers

from decisions.errors import ValidationFailed
from decisions.personalize import Guest, Personalize, PersonalizeConfig, flow_body
from decisions.service import DecisionService
from gateway import compose
from gateway.call import Call
from gateway.headers import browser_id, utm_params
from gateway.identity import Visitor
from gateway.operations import recognise
from gateway.pending import PendingProfiles
from gateway.settings import Settings
from state.exposures import Exposure
from state.profiles import Profile
from state.versions import Version

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).parent.parent / "examples" / "decisions.yaml"
CDP = "http://127.0.0.1:9/cdp"


REPEAT = Profile(
    "acme-ann", anonymous=False, buyer_id="acme", orders=3, spent=900.0, browser_id="bid-ann"
)
NEWCOMER = Profile("anon-o1", anonymous=True)


def call(
    path: str,
    query: str = "",
    visitor: Visitor | None = None,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    at: float | None = None,
) -> Call:
    return Call(
        operation=recognise(method, path),
        method=method,
        path=path,
        query=query,
        headers=Headers(headers or {}),
        client="127.0.0.1",
        token="secret-token",
        visitor=visitor,
        received_at=time.time() if at is None else at,
    )


def ann() -> Visitor:
    return Visitor("acme-ann", anonymous=False, buyer_id="acme")


def newcomer() -> Visitor:
    return Visitor("anon-o1", anonymous=True, anon_order_id="o1")


def settings(tmp_path: Path, **extra: Any) -> Settings:
    return Settings(store=tmp_path / "gw.db", **extra)


async def started(
    tmp_path: Path,
    profiles: tuple[Profile, ...] = (REPEAT, NEWCOMER),
    client: httpx.AsyncClient | None = None,
    **extra: Any,
) -> DecisionService:
    """A started service on its own SQLite state holding these profiles, built by the
    composition root from settings (so CDP settings wire Personalize with `client`)."""
    config = settings(tmp_path, **extra)
    state = await compose.open_store(config)
    for profile in profiles:
        await state.profiles.update(profile.visitor_id, lambda _, p=profile: p)
    service = compose.decider(config, state, client or httpx.AsyncClient())
    service.config = replace(service.config, watch_interval=0.02)
    await service.start()
    return service


async def latest(service: DecisionService) -> Version:
    number = await service.versions.latest_number()
    assert number is not None
    version = await service.versions.get(number)
    assert version is not None
    return version


async def test_repeat_customer_and_newcomer_get_different_lists(tmp_path: Path) -> None:
    service = await started(tmp_path, decisions=EXAMPLE)
    try:
        ann_products = await service.decide(call("/v1/me/products", "page=1", ann()))
        new_products = await service.decide(call("/v1/me/products", "page=1", newcomer()))
        ann_promos = await service.decide(call("/v1/me/promotions", "", ann()))
        new_promos = await service.decide(call("/v1/me/promotions", "", newcomer()))
    finally:
        await service.stop()
    assert ann_products and new_products and ann_promos and new_promos
    assert ann_products.query == "page=1&categoryID=mens-watches&sortBy=!xp.popularity"
    assert (
        ann_products.header == "table=featured-products;rule=vip-watches;variant=default;version=1"
    )
    assert ann_products.reorder is None
    assert new_products.query == "page=1&ID=p-001%7Cp-007%7Cp-013%7Cp-021"
    assert new_products.reorder is not None
    assert ann_promos.query == "xp.targetAudience=repeatCustomer%7Cvip%7Call"
    assert new_promos.query == "xp.targetAudience=newVisitor%7Call"
    assert "rule=welcome-offers" in new_promos.header


async def test_only_get_list_calls_are_decided(tmp_path: Path) -> None:
    service = await started(tmp_path, decisions=EXAMPLE)
    try:
        assert await service.decide(call("/v1/me/products/p-001", "", ann())) is None
        assert await service.decide(call("/v1/cart/lineitems", "", ann(), method="POST")) is None
        assert (
            await service.decide(call("/v1/me/products", "search=watch", ann())) is None
        )  # unless: search
    finally:
        await service.stop()
    assert service.stats["no_match"] == 1


async def test_a_failure_propagates_for_the_proxy_to_count(tmp_path: Path) -> None:
    service = await started(tmp_path, decisions=EXAMPLE)

    class Broken:
        async def get(self, visitor_id: str) -> Profile | None:
            raise RuntimeError("profile store down")

    service.profiles = Broken()  # type: ignore[assignment]
    try:
        with pytest.raises(RuntimeError):
            await service.decide(call("/v1/me/products", "page=1", ann()))
    finally:
        await service.stop()


async def test_a_decision_names_what_the_shopper_is_exposed_to(tmp_path: Path) -> None:
    service = await started(tmp_path, decisions=EXAMPLE)
    t0 = time.time()
    try:
        vip = await service.decide(call("/v1/me/products", "", ann(), at=t0))
        nobody = await service.decide(call("/v1/me/products", "", None, at=t0))
    finally:
        await service.stop()
    assert vip is not None and vip.exposures == (
        Exposure("acme-ann", "featured-products", "vip-watches", "default", 1, "me/products", t0),
    )
    assert nobody is None or nobody.exposures == ()  # no visitor id: nothing to count


# --- CDP / Personalize ------------------------------------------------------------------------

CDP_TABLES = """
segments:
  vip: { cdp: VIP }
  anyone: { anonymous: false }
tables:
  - id: t
    applies_to: me/products
    rules:
      - id: vip
        when: { segment: vip }
        then: { filters: { xp.sale: true } }
      - id: local
        when: { segment: anyone }
        then: { pageSize: 5 }
"""


async def cdp_service(
    tmp_path: Path, client: httpx.AsyncClient, timeout_ms: int = 150
) -> DecisionService:
    (tmp_path / "t.yaml").write_text(CDP_TABLES)
    return await started(
        tmp_path,
        (REPEAT,),
        client,
        decisions=tmp_path / "t.yaml",
        cdp_url=CDP,
        cdp_client_key="ck",
        cdp_pos="shop",
        personalize_flow="segments_flow",
        personalize_timeout_ms=timeout_ms,
        personalize_segments_path="data.segments",
    )


async def test_cdp_segments_are_used_and_cached(tmp_path: Path) -> None:
    async with httpx.AsyncClient() as client:
        with respx.mock(assert_all_mocked=True) as mock:
            route = mock.post(f"{CDP}/v2/callFlows").respond(
                json={"data": {"segments": [{"name": "VIP"}]}}
            )
            service = await cdp_service(tmp_path, client)
            try:
                first = await service.decide(call("/v1/me/products", "", ann()))
                second = await service.decide(call("/v1/me/products", "", ann()))
            finally:
                await service.stop()
    assert first and first.query == "xp.sale=true" and second and second.query == "xp.sale=true"
    assert route.call_count == 1
    sent = json.loads(route.calls[0].request.content)
    assert sent == {  # a registered shopper is named by the identifier IDENTITY events carry
        "clientKey": "ck",
        "channel": "WEB",
        "language": "en",
        "pointOfSale": "shop",
        "friendlyId": "segments_flow",
        "identifiers": {"provider": "ordercloud", "id": "acme-ann"},
        "params": {},
    }


async def test_callflows_forwards_user_agent_campaign_country_and_custom_params(
    tmp_path: Path,
) -> None:
    async with httpx.AsyncClient() as client:
        with respx.mock(assert_all_mocked=True) as mock:
            route = mock.post(f"{CDP}/v2/callFlows").respond(json={"data": {"segments": []}})
            (tmp_path / "t.yaml").write_text(CDP_TABLES)
            service = await started(
                tmp_path,
                (NEWCOMER,),
                client,
                decisions=tmp_path / "t.yaml",
                cdp_url=CDP,
                cdp_client_key="ck",
                personalize_flow="segments_flow",
                personalize_params="site=eu, tier = gold",
                country_header="X-Geo",
            )
            headers = {
                "user-agent": "Mozilla/5.0 (Shopper)",
                "referer": "https://shop.example/p?utm_source=news&utm_campaign=spring&x=1",
                "x-geo": "de",
                "cf-ipcountry": "FR",  # not the configured header
                "cookie": "bid_ck=bid-new",
            }
            try:
                await service.decide(call("/v1/me/products", "", newcomer(), headers=headers))
            finally:
                await service.stop()
    request = route.calls[0].request
    sent = json.loads(request.content)
    assert request.headers["user-agent"] == "Mozilla/5.0 (Shopper)"
    assert sent["browserId"] == "bid-new" and "identifiers" not in sent  # anonymous: browser id
    assert sent["params"] == {
        "site": "eu",
        "tier": "gold",
        "utm": {"utm_source": "news", "utm_campaign": "spring"},
        "geo": {"country": "DE"},
    }


def test_flow_body_names_the_guest_one_way_only() -> None:
    config = PersonalizeConfig(url=CDP, flow="f", client_key="ck", pos="shop")
    registered = flow_body(config, Guest("acme-ann", anonymous=False, browser_id="bid"))
    anonymous = flow_body(config, Guest("anon-o1", anonymous=True, browser_id="bid"))
    assert registered is not None and anonymous is not None
    assert registered["identifiers"] == {"provider": "ordercloud", "id": "acme-ann"}
    assert "browserId" not in registered and "email" not in registered
    assert anonymous["browserId"] == "bid" and "identifiers" not in anonymous
    assert flow_body(config, Guest("anon-o2", anonymous=True)) is None  # nobody to name
    utm = (("utm_source", "mail"),)
    with_params = flow_body(
        replace(config, params=(("a", "1"),)), Guest("anon-o1", True, "bid", utm=utm, country="SE")
    )
    assert with_params is not None
    assert with_params["params"] == {
        "a": "1",
        "utm": {"utm_source": "mail"},
        "geo": {"country": "SE"},
    }


def test_utm_from_the_query_else_the_referer() -> None:
    assert utm_params("utm_source=q&page=2", "https://s/?utm_source=r") == {"utm_source": "q"}
    assert utm_params("page=2", "https://s/x?UTM_Medium=email&a=b") == {"utm_medium": "email"}
    assert utm_params("", None) == {}


async def test_a_login_drops_cached_segments_and_its_profile_is_awaited(tmp_path: Path) -> None:
    """A list call while the login's profile is being read waits for it (within the budget), and
    the new login generation asks the flow again instead of serving the cached answer."""
    answers = iter([["nobody"], ["VIP"]])
    async with httpx.AsyncClient() as client:
        with respx.mock(assert_all_mocked=True) as mock:
            route = mock.post(f"{CDP}/v2/callFlows").mock(
                side_effect=lambda request: httpx.Response(
                    200, json={"data": {"segments": next(answers)}}
                )
            )
            pending = PendingProfiles()
            service = await cdp_service(tmp_path, client, timeout_ms=500)
            service.pending = pending
            visitor = replace(ann(), key="user:ann")
            try:
                before = await service.decide(call("/v1/me/products", "", visitor))
                pending.begin("user:ann")

                async def login_settles() -> None:
                    await asyncio.sleep(0.05)
                    await service.profiles.update(
                        "acme-ann", lambda p: replace(p, identified_at=time.time())
                    )
                    pending.end("user:ann")

                settling = asyncio.create_task(login_settles())
                listed = call("/v1/me/products", "", visitor)
                listed.shopper = "user:ann"
                after = await service.decide(listed)
                await settling
            finally:
                await service.stop()
    assert before and before.query == "pageSize=5"
    assert after and after.query == "xp.sale=true"  # the flow was asked again, after the login
    assert route.call_count == 2
    assert service.stats["login_waits"] == 1 and service.stats["login_wait_timeouts"] == 0


async def test_slow_cdp_falls_back_to_local_segments_within_budget(tmp_path: Path) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(1.0)
        return httpx.Response(200, json={"data": {"segments": ["VIP"]}})

    async with httpx.AsyncClient() as client:
        with respx.mock:
            respx.post(f"{CDP}/v2/callFlows").mock(side_effect=slow)
            service = await cdp_service(tmp_path, client, timeout_ms=50)
            try:
                started_at = time.perf_counter()
                decision = await service.decide(call("/v1/me/products", "", ann()))
                elapsed = time.perf_counter() - started_at
            finally:
                await service.stop()
    assert decision is not None and decision.query == "pageSize=5"  # local segment only
    assert elapsed < 0.8  # generous: the budget is 50 ms, the CDP answer takes 1 s
    assert service.stats["cdp_timeouts"] == 1


async def test_failing_cdp_falls_back_to_local_segments(tmp_path: Path) -> None:
    async with httpx.AsyncClient() as client:
        with respx.mock:
            route = respx.post(f"{CDP}/v2/callFlows").respond(500)
            service = await cdp_service(tmp_path, client)
            try:
                first = await service.decide(call("/v1/me/products", "", ann()))
                second = await service.decide(call("/v1/me/products", "", ann()))
            finally:
                await service.stop()
    assert first and first.query == "pageSize=5" and second and second.query == "pageSize=5"
    assert (
        service.stats["cdp_errors"] == 1 and route.call_count == 1
    )  # failures are remembered briefly


def test_browser_id_from_cookie_or_header() -> None:
    assert browser_id({"cookie": "a=1; bid_ck=abc-123; x=2"}, "ck") == "abc-123"
    assert browser_id({"cookie": "BID_ck=legacy"}, "ck") == "legacy"
    assert browser_id({"cookie": "bid_ck=c", "x-browser-id": "h"}, "ck") == "h"
    assert browser_id({"x-browser-id": "hdr"}, "ck") == "hdr"
    assert browser_id({}, "ck") is None


# --- hot reload, versions -----------------------------------------------------------------------


async def wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def test_hot_reload_of_good_and_bad_files(tmp_path: Path) -> None:
    tables = tmp_path / "tables.yaml"
    shutil.copy(EXAMPLE, tables)
    service = await started(tmp_path, decisions=tables)
    try:
        assert service.version == 1
        tables.write_text(EXAMPLE.read_text().replace("pageSize: 12", "pageSize: 24"))
        await wait_for(lambda: service.version == 2)
        assert "pageSize: 24" in (await latest(service)).source
        assert (await latest(service)).author == f"file:{tables}"
        good = service.live
        tables.write_text(EXAMPLE.read_text().replace("pageSize: 12", "pageSize: 1000"))
        await wait_for(lambda: service.stats["reload_errors"] == 1)
        assert service.live is good and service.version == 2
        [error] = service.last_errors
        assert (error.table, error.rule, error.field) == (
            "featured-products",
            "vip-sale",
            "then.pageSize",
        )
        assert (
            error.line
            == EXAMPLE.read_text()
            .splitlines()
            .index("        then:   { filters: { xp.sale: true }, pageSize: 12 }")
            + 1
        )
        decision = await service.decide(call("/v1/me/products", "", newcomer()))
        assert decision is not None and "version=2" in decision.header
    finally:
        await service.stop()


async def test_restart_keeps_newest_version_and_imports_only_changed_files(tmp_path: Path) -> None:
    tables = tmp_path / "tables.yaml"
    shutil.copy(EXAMPLE, tables)
    service = await started(tmp_path, decisions=tables)
    await service.publish(
        EXAMPLE.read_text().replace("p-021", "p-022"), "marketer@example.com", "swap pin"
    )
    await service.stop()
    again = await started(tmp_path, decisions=tables)  # same file: the admin's v2 stays live
    await again.stop()
    assert again.version == 2
    tables.write_text(EXAMPLE.read_text().replace("p-021", "p-023"))
    third = await started(tmp_path, decisions=tables)  # file edited while down: imported as v3
    await third.stop()
    assert third.version == 3 and "p-023" in (await latest(third)).source


async def test_publish_rejects_bad_documents_and_rollback_republishes(tmp_path: Path) -> None:
    service = await started(tmp_path)
    try:
        assert service.version is None
        assert await service.decide(call("/v1/me/products", "", ann())) is None
        v1 = await service.publish(EXAMPLE.read_text(), "a")
        v2 = await service.publish(EXAMPLE.read_text().replace("p-001", "p-002"), "b")
        assert "-        then:   { pin: [p-001, p-007" in v2.diff
        assert "+        then:   { pin: [p-002, p-007" in v2.diff and v2.diff.startswith(
            "--- v1\n+++ v2\n"
        )
        with pytest.raises(ValidationFailed):
            await service.publish("tables: [oops", "c")
        assert service.version == 2
        v3 = await service.rollback(v1.version, "c")
        assert (
            v3 is not None
            and v3.version == 3
            and (await service.versions.get(3)).source == EXAMPLE.read_text()
        )
        assert await service.rollback(99, "c") is None
        assert [v.version for v in await service.list_versions()] == [3, 2, 1]
    finally:
        await service.stop()


async def test_explain_names_segments_and_failed_conditions(tmp_path: Path) -> None:
    service = await started(tmp_path, decisions=EXAMPLE)
    try:
        result = await service.explain("acme-ann", "/v1/me/products?categoryID=x&page=1")
        forced = await service.explain(
            "anon-zz", "https://shop/v1/me/promotions", segments=["repeat-customer"]
        )
        wrong = await service.explain("anon-zz", "/v1/me/orders")
    finally:
        await service.stop()
    assert result["segments"] == ["big-spender", "repeat-customer"]
    rules = result["tables"][0]["rules"]
    assert rules[0] == {
        "rule": "vip-watches",
        "matched": False,
        "chosen": False,
        "failed": "unless",
    }
    assert result["query"] == "categoryID=x&page=1"
    assert forced["segments_given"] == ["repeat-customer"]
    assert (
        forced["x_decision"]
        == "table=audience-promotions;rule=repeat-offers;variant=default;version=1"
    )
    assert "error" in wrong


async def test_workers_sharing_a_store_import_once_and_follow_each_others_publishes(
    tmp_path: Path,
) -> None:
    tables = tmp_path / "tables.yaml"
    shutil.copy(EXAMPLE, tables)
    one = await started(tmp_path, decisions=tables)
    two = await started(tmp_path, decisions=tables)
    try:
        assert (one.version, two.version) == (1, 1)  # the second worker did not re-import
        await one.publish(EXAMPLE.read_text().replace("p-021", "p-022"), "mia")
        await wait_for(lambda: two.version == 2)
        decision = await two.decide(call("/v1/me/products", "", newcomer()))
        assert decision is not None and "p-022" in decision.query
        tables.write_text(EXAMPLE.read_text().replace("p-021", "p-029"))
        await wait_for(lambda: one.version == 3 and two.version == 3)
        await asyncio.sleep(0.1)  # both watchers have seen the edit by now
        assert [v.version for v in await one.list_versions()] == [3, 2, 1]
    finally:
        await one.stop()
        await two.stop()


async def test_each_storefront_asks_its_own_flow() -> None:
    default = PersonalizeConfig(url=CDP, flow="flow-a", client_key="ck-a", pos="shop-a")
    other = PersonalizeConfig(url=CDP, flow="flow-b", client_key="ck-b", pos="shop-b")
    async with httpx.AsyncClient() as client:
        with respx.mock(assert_all_mocked=True) as mock:
            route = mock.post(f"{CDP}/v2/callFlows").respond(json={"segments": []})
            personalize = Personalize({None: default, "client-b": other}, client)
            await personalize.segments(Guest("acme-ann", False, client_id="client-b"))
            await personalize.segments(Guest("acme-ann", False, client_id="client-unknown"))
            await personalize.close()
    sent = [json.loads(c.request.content) for c in route.calls]
    assert [(b["friendlyId"], b["clientKey"], b["pointOfSale"]) for b in sent] == [
        ("flow-b", "ck-b", "shop-b"),
        ("flow-a", "ck-a", "shop-a"),
    ]
