"""TrackingService end to end with a fake OrderCloud upstream and fake destinations."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gateway import compose
from gateway.call import Call
from gateway.settings import Settings
from state.exposures import Exposure
from tests.fakes_destinations import (
    ANON,
    JANE,
    FakeIdentity,
    FakeUpstream,
    Sink,
    answer,
    client_for,
    make_call,
    token,
)
from tracking.breaker import Breaker
from tracking.dispatcher import Policy
from tracking.service import TrackingService

pytestmark = pytest.mark.anyio

NEW_TOKEN = token({"usr": "jane", "cid": "c1"})
ANON_TOKEN = token({"orderid": "o1", "usr": "anon-template"})
ME = {
    "ID": "jane",
    "Buyer": {"ID": "b1"},
    "Email": "jane@example.com",
    "FirstName": "Jane",
    "Locale": {"Language": "en", "Currency": "EUR"},
    "Password": None,
}
LINES = [
    {
        "ID": f"l{i}",
        "ProductID": f"p{i % 3}",
        "Quantity": 1,
        "UnitPrice": 2.0,
        "LineTotal": 2.0,
        "Product": {"ID": f"p{i % 3}", "Name": f"P{i % 3}"},
    }
    for i in range(150)
]


def upstream_routes() -> dict[str, tuple[int, Any]]:
    page = {
        1: {"Meta": {"Page": 1, "TotalPages": 2}, "Items": LINES[:100]},
        2: {"Meta": {"Page": 2, "TotalPages": 2}, "Items": LINES[100:]},
    }
    routes: dict[str, tuple[int, Any]] = {
        "/v1/me": (200, ME),
        "/v1/cart": (200, {"ID": "o1", "Currency": "EUR", "Subtotal": 4.0}),
        "/v1/orders/Outgoing/o1": (200, {"ID": "o1", "Currency": "EUR", "Subtotal": 4.0}),
    }
    for n, body in page.items():
        routes[f"/v1/orders/Outgoing/o1/lineitems?page={n}&pageSize=100"] = (200, body)
    for i in range(3):
        routes[f"/v1/me/products/p{i}"] = (
            200,
            {"ID": f"p{i}", "Name": f"P{i}", "xp": {"Secret": "x"}},
        )
    return routes


class Rig:
    """A tracker on its own SQLite state, with fake OrderCloud, fake destinations and fast
    retries; `open` builds it the way the composition root does."""

    def __init__(self, tmp_path: Path, **settings: Any) -> None:
        self.sinks = {
            host: Sink([200]) for host in ("cdp.test", "send.test", "rfk.test", "hook.test")
        }
        self.http = client_for(self.sinks)
        self.upstream = FakeUpstream(upstream_routes())
        self.settings = Settings(
            store=tmp_path / "t.db",
            events_file=tmp_path / "events.jsonl",
            cdp_url="http://cdp.test",
            cdp_client_key="ck",
            send_url="http://send.test",
            send_site_id="site-1",
            discover_url="http://rfk.test/event",
            discover_api_key="01-key",
            webhook_url="http://hook.test/in",
            webhook_secret="whsec",
            **settings,
        )

    @classmethod
    async def open(
        cls,
        tmp_path: Path,
        clock: Callable[[], float] = time.time,
        hold: float = 30.0,
        **settings: Any,
    ) -> Rig:
        rig = cls(tmp_path, **settings)
        rig.state = await compose.open_store(rig.settings)
        ids = compose.browsers(rig.settings, rig.state, rig.http)

        def fast() -> Policy:
            return Policy(
                base_delay=0.001, max_delay=0.01, poll=0.02, breaker=Breaker(threshold=50)
            )

        config = replace(compose.tracking_config(rig.settings), hold_grace=hold)
        rig.service = TrackingService(
            config,
            outbox=rig.state.outbox,
            profiles=rig.state.profiles,
            carts=rig.state.carts,
            exposures=rig.state.exposures,
            browsers=ids,
            destinations=compose.destinations(rig.settings, rig.http, ids),
            routing=compose.routing(rig.settings, rig.http, ids),
            upstream=rig.upstream,
            identity=FakeIdentity({NEW_TOKEN: JANE, "jane-token": JANE}),
            policy=fast,
            clock=clock,
        )
        return rig

    async def close(self) -> None:
        await self.service.stop(2)
        await self.state.close()
        await self.http.aclose()

    def hook(self) -> list[dict[str, Any]]:
        return self.sinks["hook.test"].json()

    def file(self) -> list[dict[str, Any]]:
        path = self.settings.events_file
        assert path is not None
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    async def drained(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            stats = await self.service.outbox.stats()
            if not self.service._background and all(s["pending"] == 0 for s in stats.values()):
                await self.service.learning.flush()  # profile writes are coalesced
                return
            assert time.monotonic() < deadline, stats
            await asyncio.sleep(0.01)


@pytest.fixture
async def rig(tmp_path: Path):  # type: ignore[no-untyped-def]
    rig = await Rig.open(tmp_path)
    await rig.service.start()
    yield rig
    await rig.close()


async def test_submit_is_hydrated_completely_even_for_a_cart_built_elsewhere(rig: Rig) -> None:
    call = make_call("POST", "/v1/cart/submit", visitor=JANE, bearer="jane-token")
    await rig.service.record(call, 201, answer({"ID": "o1", "Total": 300.0, "Currency": "EUR"}))
    await rig.drained()
    [hook] = rig.hook()
    payload = hook["payload"]
    assert hook["type"] == "sitecore.backbone.messages.orders.submitted"
    assert [line["ID"] for line in payload["lineitems"]] == [line["ID"] for line in LINES]
    assert sorted(payload["products"]) == ["p0", "p1", "p2"]
    assert payload["user"]["Email"] == "jane@example.com" and "Password" not in payload["user"]
    assert hook["visitor"] == "b1-jane" and hook["browser_id"] == "minted-bid"
    assert {token for _, token in rig.upstream.calls} == {"jane-token"}
    cdp_types = [b["type"] for b in rig.sinks["cdp.test"].json() if "type" in b]
    assert cdp_types == ["ADD"] * 150 + ["CONFIRM", "CHECKOUT"]
    profile = await rig.service.profiles.get("b1-jane")
    assert profile is not None and profile.orders == 1 and profile.spent == 300.0


async def test_login_hydrates_the_user_with_the_new_token(rig: Rig) -> None:
    body = b"grant_type=password&username=jane&password=s3cret&client_id=c1"
    call = make_call(
        "POST",
        "/oauth/token",
        visitor=None,
        bearer=None,
        body=body,
        headers={"x-browser-id": "bid-from-storefront"},
    )
    await rig.service.record(call, 200, answer({"access_token": NEW_TOKEN, "expires_in": 3600}))
    await rig.drained()
    assert {token for _, token in rig.upstream.calls} == {NEW_TOKEN}
    assert "/v1/me" in [path for path, _ in rig.upstream.calls]
    [hook] = rig.hook()
    assert hook["type"] == "sitecore.backbone.messages.sessions.identified"
    assert (hook["visitor"], hook["browser_id"]) == ("b1-jane", "bid-from-storefront")
    [identity] = [b for b in rig.sinks["cdp.test"].json() if b.get("type") == "IDENTITY"]
    assert identity["identifiers"][0] == {"provider": "ordercloud", "id": "b1-jane"}
    assert identity["language"] == "EN" and identity["currency"] == "EUR"


async def test_transfer_carries_the_anonymous_browser_id_over(rig: Rig) -> None:
    view = make_call("GET", "/v1/me/products/p1", visitor=ANON, bearer=ANON_TOKEN)
    await rig.service.record(view, 200, answer({"ID": "p1", "Name": "P1"}))
    await rig.drained()
    transfer = make_call(
        "PUT", "/v1/me/orders", f"anonUserToken={ANON_TOKEN}", visitor=JANE, bearer="jane-token"
    )
    await rig.service.record(transfer, 204, b"")
    await rig.drained()
    later = make_call("GET", "/v1/me/products/p2", visitor=JANE, bearer="jane-token")
    await rig.service.record(later, 200, answer({"ID": "p2"}))
    await rig.drained()
    hooks = rig.hook()
    assert [h["visitor"] for h in hooks] == ["anon-o1", "b1-jane", "b1-jane"]
    assert hooks[1]["previous_visitor"] == "anon-o1"
    assert len({h["browser_id"] for h in hooks}) == 1
    cdp_bodies = [b for b in rig.sinks["cdp.test"].json() if "type" in b]
    assert [b["type"] for b in cdp_bodies] == ["VIEW", "IDENTITY", "VIEW"]
    assert len({b["browser_id"] for b in cdp_bodies}) == 1
    profile = await rig.service.profiles.get("b1-jane")
    assert profile is not None and profile.viewed_products == ["p1", "p2"]


async def test_removal_knows_its_product_from_the_cart(rig: Rig) -> None:
    add = make_call("POST", "/v1/cart/lineitems", visitor=ANON, bearer=ANON_TOKEN)
    await rig.service.record(add, 201, answer(LINES[1]))
    remove = make_call("DELETE", "/v1/cart/lineitems/l1", visitor=ANON, bearer=ANON_TOKEN)
    await rig.service.record(remove, 204, b"")
    await rig.drained()
    added, removed = rig.hook()
    assert added["payload"]["order_id"] == "o1"
    assert removed["payload"]["lineitem"]["ProductID"] == "p1"
    [send_remove] = [
        b
        for b in rig.sinks["send.test"].json()
        if b["properties"][0]["product"]["itemQuantity"] == -1
    ]
    assert send_remove["properties"][0]["product"]["itemCode"] == "p1"


async def test_exposures_go_to_webhook_file_and_cdp_only(rig: Rig) -> None:
    seen = Exposure("anon-o1", "home", "r1", "B", 3, "me/products", 5.0)
    call = make_call("GET", "/v1/me/products", visitor=ANON, bearer=ANON_TOKEN)
    await rig.service.record(call, 200, None, [seen])
    await rig.drained()
    assert (await rig.state.exposures.report())[0]["exposures"] == 1
    assert [h["type"] for h in rig.hook()] == ["sitecore.backbone.messages.decisions.exposed"]
    assert [e["type"] for e in rig.file()] == ["decisions.exposed"]
    [cdp_body] = [b for b in rig.sinks["cdp.test"].json() if "type" in b]
    assert cdp_body["type"] == "DECISION_EXPOSED" and cdp_body["ext"]["variant"] == "B"
    assert rig.sinks["send.test"].bodies == [] and rig.sinks["rfk.test"].bodies == []


async def test_no_secret_reaches_any_destination_or_log(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = ["s3cret", NEW_TOKEN, ANON_TOKEN, "jane-token", "refresh-xyz", "pw-register"]
    rig.upstream.routes["/v1/me"] = (200, {**ME, "Password": "pw-register", "xp": {"t": NEW_TOKEN}})
    journey = [
        (
            make_call("GET", "/v1/me/products/p1", visitor=ANON, bearer=ANON_TOKEN),
            200,
            answer({"ID": "p1"}),
        ),
        (
            make_call("GET", "/v1/me/products", "search=bike", visitor=ANON, bearer=ANON_TOKEN),
            200,
            answer({"Items": [{"ID": "p1"}], "Meta": {"TotalCount": 1}}),
        ),
        (
            make_call("POST", "/v1/cart/lineitems", visitor=ANON, bearer=ANON_TOKEN),
            201,
            answer(LINES[0]),
        ),
        (
            make_call(
                "PUT",
                "/v1/me/register",
                f"anonUserToken={ANON_TOKEN}",
                visitor=ANON,
                bearer=ANON_TOKEN,
                body=answer({"Username": "jane", "Password": "pw-register"}),
            ),
            200,
            answer({"access_token": NEW_TOKEN}),
        ),
        (
            make_call(
                "POST",
                "/oauth/token",
                visitor=None,
                bearer=None,
                body=b"grant_type=password&username=jane&password=s3cret",
            ),
            200,
            answer({"access_token": NEW_TOKEN, "refresh_token": "refresh-xyz"}),
        ),
        (
            make_call(
                "PUT",
                "/v1/me/orders",
                f"anonUserToken={ANON_TOKEN}",
                visitor=JANE,
                bearer="jane-token",
                headers={"referer": f"https://shop.example/x?anonUserToken={ANON_TOKEN}"},
            ),
            204,
            b"",
        ),
        (
            make_call("POST", "/v1/cart/submit", visitor=JANE, bearer="jane-token"),
            201,
            answer({"ID": "o1", "Total": 2.0}),
        ),
    ]
    for call, status, body in journey:
        await rig.service.record(call, status, body)
    await rig.drained()
    delivered = b"".join(b for sink in rig.sinks.values() for b in sink.bodies)
    headers = " ".join(str(dict(r.headers)) for sink in rig.sinks.values() for r in sink.requests)
    stored = (rig.settings.events_file or Path()).read_text()
    assert len(rig.file()) == 7
    for secret in secrets:
        assert secret.encode() not in delivered, secret
        assert secret not in headers and secret not in stored and secret not in caplog.text


async def test_an_abandoned_cart_is_reported_once_per_state(tmp_path: Path) -> None:
    now = [1_000.0]
    rig = await Rig.open(tmp_path, clock=lambda: now[0], abandon_after=100.0)
    service = rig.service
    await service.start()
    add = make_call("POST", "/v1/cart/lineitems", visitor=ANON, bearer=ANON_TOKEN)
    await service.record(add, 201, answer(LINES[0]))
    await rig.drained()
    now[0] += 50
    assert await service.sweep() == 0
    now[0] += 100
    assert await service.sweep() == 1
    assert await service.sweep() == 0
    now[0] += 1000
    assert await service.sweep() == 0  # same cart state: never twice
    await service.record(
        make_call("POST", "/v1/cart/lineitems", visitor=ANON), 201, answer(LINES[1])
    )
    await rig.drained()
    now[0] += 101
    assert await service.sweep() == 1
    await service.record(
        make_call("POST", "/v1/cart/submit", visitor=ANON), 201, answer({"ID": "o1"})
    )
    await rig.drained()
    now[0] += 1000
    assert await service.sweep() == 0  # submitted: nothing left to abandon
    await rig.drained()
    abandoned = [h for h in rig.hook() if h["type"].endswith("orders.abandoned")]
    assert len(abandoned) == 2 and abandoned[1]["payload"]["items"] == 2
    assert any(b.get("type") == "CART_ABANDONED" for b in rig.sinks["cdp.test"].json())
    assert any(b.get("actionType") == "CART_ABANDONED" for b in rig.sinks["send.test"].json())
    await rig.close()


async def test_an_event_never_hydrated_goes_as_recorded_once_its_hold_passes(
    tmp_path: Path,
) -> None:
    rig = await Rig.open(tmp_path, hold=0.0, upstream_timeout=0.2)
    hang = asyncio.Event()

    class Stuck:
        async def get_json(self, path: str, token: str | None, timeout: float | None = None) -> Any:
            await hang.wait()

    rig.service.upstream = Stuck()
    await rig.service.start()
    call = make_call("POST", "/v1/cart/submit", visitor=JANE, bearer="jane-token")
    await rig.service.record(call, 201, answer({"ID": "o1", "Total": 3.0}))
    await rig.service.stop(0.05)  # hydration still waiting: cancelled, the event stays held
    assert rig.hook() == []
    await rig.state.close()
    again = await Rig.open(tmp_path, hold=0.0, upstream_timeout=0.2)  # the process restarted
    await again.service.start()
    await again.drained()
    [hook] = again.hook()
    assert hook["payload"]["order"]["ID"] == "o1" and hook["visitor"] == "b1-jane"
    await again.close()
    await rig.http.aclose()


async def test_record_raises_when_the_store_is_closed_and_the_proxy_counts_it(
    tmp_path: Path,
) -> None:
    rig = await Rig.open(tmp_path)
    call = make_call("GET", "/v1/me/products/p1")
    await rig.service.record(call, 200, answer({"ID": "p1"}))  # not started: ignored
    await rig.service.start()
    await rig.state.close()
    with pytest.raises(RuntimeError):
        await rig.service.record(call, 200, answer({"ID": "p1"}))
    await rig.service.stop(1)
    await rig.http.aclose()


async def test_concurrent_first_events_of_a_visitor_share_one_minted_browser_id(rig: Rig) -> None:
    calls = [
        make_call("GET", "/v1/me/products", "search=bike", visitor=ANON, bearer=ANON_TOKEN),
        make_call("GET", "/v1/me/products/p1", visitor=ANON, bearer=ANON_TOKEN),
        make_call("GET", "/v1/me/products/p2", visitor=ANON, bearer=ANON_TOKEN),
    ]
    bodies = [
        answer({"Items": [], "Meta": {"TotalCount": 0}}),
        answer({"ID": "p1"}),
        answer({"ID": "p2"}),
    ]
    await asyncio.gather(*(rig.service.record(c, 200, b) for c, b in zip(calls, bodies)))
    await rig.drained()
    assert len({h["browser_id"] for h in rig.hook()}) == 1
    creates = [r for r in rig.sinks["cdp.test"].requests if r.url.path.endswith("create.json")]
    assert len(creates) == 1


async def test_login_seeds_the_profile_with_ordercloud_history_and_views_add_categories(
    rig: Rig,
) -> None:
    history = {
        "Meta": {"TotalCount": 3},
        "Items": [{"Total": 100.0}, {"Total": 250.5}, {"Total": 50}],
    }
    rig.upstream.routes["/v1/me/orders?Status=!Unsubmitted&sortBy=!DateSubmitted&pageSize=100"] = (
        200,
        history,
    )
    rig.upstream.routes["/v1/me/categories?productID=p1&depth=all&pageSize=100"] = (
        200,
        {"Items": [{"ID": "mens-watches"}, {"ID": "watches"}]},
    )
    login = make_call(
        "POST",
        "/oauth/token",
        visitor=None,
        bearer=None,
        body=b"grant_type=password&username=jane&password=s3cret&client_id=c1",
    )
    await rig.service.record(login, 200, answer({"access_token": NEW_TOKEN}))
    view = make_call("GET", "/v1/me/products/p1", visitor=JANE, bearer=NEW_TOKEN)
    await rig.service.record(view, 200, answer({"ID": "p1", "Name": "P1"}))
    await rig.drained()
    profile = await rig.service.profiles.get("b1-jane")
    assert profile is not None
    assert (profile.orders, profile.spent) == (3, 400.5)
    assert profile.viewed_categories == ["mens-watches", "watches"]


async def test_a_products_categories_are_looked_up_once_even_when_it_has_none(rig: Rig) -> None:
    for _ in range(3):
        view = make_call("GET", "/v1/me/products/p2", visitor=JANE, bearer=NEW_TOKEN)
        await rig.service.record(view, 200, answer({"ID": "p2", "Name": "P2"}))
        await rig.drained()
    lookups = [path for path, _ in rig.upstream.calls if path.startswith("/v1/me/categories")]
    assert lookups == ["/v1/me/categories?productID=p2&depth=all&pageSize=100"]
    assert [e["payload"].get("categories") for e in rig.hook()] == [[], [], []]


async def test_a_view_held_behind_an_earlier_one_is_not_looked_up_again(rig: Rig) -> None:
    def view(product: str) -> Call:
        return make_call("GET", f"/v1/me/products/{product}", visitor=JANE, bearer=NEW_TOKEN)

    await rig.service.record(view("p2"), 200, answer({"ID": "p2"}))
    await rig.drained()  # p2's categories are known from here on
    await rig.service.record(view("p1"), 200, answer({"ID": "p1"}))  # held: p1's are not
    await rig.service.record(view("p2"), 200, answer({"ID": "p2"}))  # held behind it
    await rig.drained()
    lookups = [path for path, _ in rig.upstream.calls if path.startswith("/v1/me/categories")]
    assert lookups == [
        "/v1/me/categories?productID=p2&depth=all&pageSize=100",
        "/v1/me/categories?productID=p1&depth=all&pageSize=100",
    ]
    assert [e["payload"]["product"]["ID"] for e in rig.hook()] == ["p2", "p1", "p2"]


async def test_a_view_held_for_hydration_does_not_hold_back_the_visitors_next_view(
    rig: Rig,
) -> None:
    def view(product: str) -> Call:
        return make_call("GET", f"/v1/me/products/{product}", visitor=JANE, bearer=NEW_TOKEN)

    await rig.service.record(view("p2"), 200, answer({"ID": "p2"}))
    await rig.drained()  # p2's categories and jane's browser id are known from here on
    rig.upstream.gate = asyncio.Event()  # p1's look-up takes a while
    await rig.service.record(view("p1"), 200, answer({"ID": "p1"}))  # held: p1's are not known
    await rig.service.record(view("p2"), 200, answer({"ID": "p2"}))
    with closing(sqlite3.connect(rig.settings.store)) as db:
        released = [r for (r,) in db.execute("SELECT released FROM events ORDER BY seq")]
    assert released == [1, 0, 1]  # the second p2 went ready, behind p1
    rig.upstream.gate.set()
    await rig.drained()
    assert [e["payload"]["product"]["ID"] for e in rig.hook()] == ["p2", "p1", "p2"]
    assert len({e["browser_id"] for e in rig.hook()}) == 1


async def test_a_call_whose_held_events_differ_in_rebinding_leaves_no_count_behind(
    rig: Rig,
) -> None:
    def view(product: str, bid: str | None = None) -> Call:
        headers = {"cookie": f"bid_ck={bid}"} if bid else None
        return make_call(
            "GET", f"/v1/me/products/{product}", visitor=JANE, bearer=NEW_TOKEN, headers=headers
        )

    await rig.service.record(view("p2"), 200, answer({"ID": "p2"}))
    await rig.drained()  # jane's browser id and p2's categories are known from here on
    rig.upstream.gate = asyncio.Event()
    # Another browser id: this one may rebind, and stays in flight while p1 is looked up.
    await rig.service.record(view("p1", "other"), 200, answer({"ID": "p1"}))
    # Both held behind it; the view (another id again) may rebind, its exposure may not.
    seen = Exposure(JANE.id, "t1", "r1", "a", 1, "me/products", time.time())
    await rig.service.record(view("p2", "third"), 200, answer({"ID": "p2"}), [seen])
    rig.upstream.gate.set()
    await rig.drained()
    assert not rig.service._rebinding  # every count taken was given back, once
