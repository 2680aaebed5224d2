"""events_for: one test per row of issue 3's table, plus the privacy and noise rules."""

from __future__ import annotations

import json

import pytest

from state import events as ev
from tests.fakes_destinations import ANON, JANE, answer, make_call, token
from tracking.mapping import anonymous_visitor, bearer_from_answer, events_for
from tracking.privacy import _SECRET_KEYS, _SECRET_PARTS, not_tracked, scrub
from tracking.service import TrackingConfig, tracked

LINE = {
    "ID": "l1",
    "ProductID": "p1",
    "Quantity": 2,
    "UnitPrice": 5.0,
    "LineTotal": 10.0,
    "Product": {"ID": "p1", "Name": "Bike"},
}


def test_failed_calls_emit_nothing() -> None:
    call = make_call("GET", "/v1/me/products/p1")
    assert events_for(call, 404, answer({"Errors": []})) == []
    assert events_for(call, 500, b"") == []


def test_password_login_is_identified_without_password_or_token() -> None:
    body = b"grant_type=password&username=jane&password=s3cret&client_id=c1&scope=Shopper"
    call = make_call("POST", "/oauth/token", visitor=None, bearer=None, body=body)
    response = answer({"access_token": token({"usr": "jane"}), "refresh_token": "r-123"})
    [event] = events_for(call, 200, response)
    assert event.type == ev.IDENTIFIED and event.data["method"] == "login"
    assert event.visitor is None and event.anonymous is False
    text = event.to_json()
    assert "s3cret" not in text and "r-123" not in text and "eyJ" not in text
    assert bearer_from_answer(response) is not None


def test_other_grants_are_not_identified() -> None:
    call = make_call(
        "POST",
        "/oauth/token",
        visitor=None,
        bearer=None,
        body=b"grant_type=client_credentials&client_id=c1",
    )
    assert events_for(call, 200, answer({"access_token": "x"})) == []


def test_register_stitches_the_anonymous_visitor_and_drops_the_password() -> None:
    anon = token({"orderid": "o1", "usr": "anon-template"})
    body = answer({"Username": "jane", "Password": "s3cret", "Email": "jane@example.com"})
    call = make_call("PUT", "/v1/me/register", f"anonUserToken={anon}", visitor=ANON, body=body)
    [event] = events_for(call, 200, answer({"access_token": token({})}))
    assert event.type == ev.IDENTIFIED and event.data["method"] == "register"
    assert event.previous_visitor == "anon-o1"
    assert event.data["user"] == {"Username": "jane", "Email": "jane@example.com"}
    assert anon not in event.to_json()


def test_transfer_is_identified_and_stitched_never_keeping_the_anon_token() -> None:
    anon = token({"orderid": "o9"})
    call = make_call("PUT", "/v1/me/orders", f"anonUserToken={anon}", visitor=JANE)
    [event] = events_for(call, 204, b"")
    assert (event.type, event.visitor, event.previous_visitor) == (
        ev.IDENTIFIED,
        "b1-jane",
        "anon-o9",
    )
    assert event.data["method"] == "transfer"
    assert anon not in event.to_json()


def test_anonymous_visitor_reads_the_claim_without_verifying() -> None:
    assert anonymous_visitor("a=1&AnonUserToken=" + token({"orderid": "x"})) == "anon-x"
    assert anonymous_visitor("anonUserToken=not-a-jwt") is None


def test_product_view() -> None:
    call = make_call("GET", "/v1/me/products/p1", headers={"x-browser-id": "bid-9"})
    [event] = events_for(call, 200, answer({"ID": "p1", "Name": "Bike"}))
    assert event.type == ev.PRODUCT_VIEWED and event.data["product"]["ID"] == "p1"
    assert event.visitor == "anon-o1" and event.browser_id == "bid-9"
    assert event.context["ip"] == "203.0.113.5" and "Firefox" in event.context["user_agent"]
    assert event.context["origin"] == "https://shop.example"


def test_search_only_with_a_search_term() -> None:
    listing = answer({"Meta": {"TotalCount": 7}, "Items": [{"ID": "p1"}, {"ID": "p2"}]})
    call = make_call("GET", "/v1/me/products", "search=bike&pageSize=2")
    [event] = events_for(call, 200, listing)
    assert event.type == ev.PRODUCTS_SEARCHED
    assert (event.data["search"], event.data["total"], event.data["products"]) == (
        "bike",
        7,
        ["p1", "p2"],
    )
    assert events_for(make_call("GET", "/v1/me/products", "pageSize=2"), 200, listing) == []


@pytest.mark.parametrize(
    ("method", "path", "kind", "order"),
    [
        ("POST", "/v1/orders/Outgoing/o1/lineitems", ev.LINE_ADDED, "o1"),
        ("post", "/V1/ORDERS/outgoing/o1/LineItems", ev.LINE_ADDED, "o1"),
        ("POST", "/v1/cart/lineitems", ev.LINE_ADDED, None),
        ("PUT", "/v1/orders/Outgoing/o1/lineitems/l1", ev.LINE_UPDATED, "o1"),
        ("PATCH", "/v1/cart/lineitems/l1", ev.LINE_UPDATED, None),
    ],
)
def test_line_added_and_updated(method: str, path: str, kind: str, order: str | None) -> None:
    [event] = events_for(make_call(method, path), 201, answer(LINE))
    assert event.type == kind and event.data["lineitem"]["ProductID"] == "p1"
    assert event.data["order_id"] == order


def test_line_removed_and_cart_cleared() -> None:
    [removed] = events_for(make_call("DELETE", "/v1/cart/lineitems/l1"), 204, b"")
    assert removed.type == ev.LINE_REMOVED and removed.data["lineitem"] == {"ID": "l1"}
    [cleared] = events_for(make_call("DELETE", "/v1/orders/Outgoing/o1"), 204, b"")
    assert cleared.type == ev.CART_CLEARED and cleared.data["order_id"] == "o1"
    [cart] = events_for(make_call("DELETE", "/v1/cart"), 204, b"")
    assert cart.type == ev.CART_CLEARED and cart.data["cart"] is True


@pytest.mark.parametrize("path", ["/v1/orders/Outgoing/o1/submit", "/v1/cart/submit"])
def test_order_submitted(path: str) -> None:
    [event] = events_for(make_call("POST", path), 201, answer({"ID": "o1", "Total": 10}))
    assert event.type == ev.ORDER_SUBMITTED and event.data["order_id"] == "o1"


def test_each_event_has_a_stable_id_and_time() -> None:
    [a] = events_for(make_call("GET", "/v1/me/products/p1"), 200, answer({"ID": "p1"}))
    assert len(a.id) == 32 and a.time == "2023-11-14T22:13:20.000Z"
    assert ev.Event.from_json(a.to_json()) == a


def test_bid_cookie_is_the_browser_id() -> None:
    call = make_call("GET", "/v1/me/products/p1", headers={"cookie": "x=1; bid_ck1=abc-123; y=2"})
    [event] = events_for(call, 200, answer({"ID": "p1"}), client_key="ck1")
    assert event.browser_id == "abc-123"


def test_scrub_removes_secrets_by_key_and_shape() -> None:
    jwt_ = token({"usr": "x"})
    cleaned = scrub({"Password": "p", "xp": {"note": f"t={jwt_}", "AccessToken": "a"}, "ok": [1]})
    assert cleaned == {"xp": {"note": "t=[redacted]"}, "ok": [1]}
    assert "eyJ" not in json.dumps(cleaned)


def test_every_secret_key_contains_a_part_the_quick_check_looks_for() -> None:
    assert all(any(part.decode() in key for part in _SECRET_PARTS) for key in _SECRET_KEYS)


@pytest.mark.parametrize(
    ("headers", "skipped"),
    [
        ({"sec-purpose": "prefetch"}, True),
        ({"purpose": "prefetch"}, True),
        ({"user-agent": "Googlebot/2.1 (+http://www.google.com/bot.html)"}, True),
        ({"sec-gpc": "1"}, True),
        ({"x-tracking-consent": "no"}, True),
        ({"user-agent": "axios/1.21.1"}, False),
        ({"user-agent": "Mozilla/5.0 Firefox/120"}, False),
    ],
)
def test_noise_and_consent(headers: dict[str, str], skipped: bool) -> None:
    assert not_tracked(headers, track_bots=False, honour_gpc=True) is skipped


def test_bots_and_gpc_are_configurable() -> None:
    assert not not_tracked({"user-agent": "bingbot/2.0"}, track_bots=True, honour_gpc=True)
    assert not not_tracked({"sec-gpc": "1"}, track_bots=False, honour_gpc=False)


def test_what_is_tracked_is_decided_cheaply() -> None:
    config = TrackingConfig()
    assert tracked(make_call("GET", "/v1/me/products/p1"), config)
    assert tracked(make_call("GET", "/v1/me/products", "pageSize=3"), config) is False
    assert tracked(make_call("GET", "/v1/me/products", "Search=bike"), config)
    assert tracked(make_call("GET", "/v1/me"), config) is False
    opted_out = make_call("GET", "/v1/me/products/p1", headers={"sec-gpc": "1"})
    assert tracked(opted_out, config) is None  # counted as skipped
    assert tracked(make_call("GET", "/v1/me/products/p1"), TrackingConfig(enabled=False)) is False
