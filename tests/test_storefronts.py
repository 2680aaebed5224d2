"""Many storefronts, one gateway: the destinations file (validation with located errors) and two
API clients whose events land only at their own destinations, end to end, with a hot reload."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from gateway.app import create_app
from gateway.sandbox import create_app as create_sandbox
from gateway.sandbox.catalog import CLIENT_ID, GLOBEX_CLIENT_ID
from gateway.serving import serve_in_thread as running
from gateway.settings import Settings
from gateway.storefronts import InvalidDestinations, parse_destinations
from state import events as ev
from tests.fake_sitecore import FakeSitecore
from tests.servers import wait_for
from tests.test_e2e_tracking import Storefront

GOOD = """
storefronts:
  default:
    webhook: { url: "http://127.0.0.1:9/a" }
  shop-b:
    cdp: { url: "http://127.0.0.1:9/cdp", client_key: ck-b, pos: shop-b.example,
           personalize_flow: flow-b }
    events: [UserLoggedIn, orders.lines.removed]
"""


def test_a_good_file_maps_client_ids_to_entries() -> None:
    fronts = parse_destinations(GOOD, "d.yaml")
    assert set(fronts) == {None, "shop-b"}
    assert fronts[None].webhook is not None and fronts[None].events is None
    b = fronts["shop-b"]
    assert b.cdp is not None and b.cdp.personalize_flow == "flow-b" and b.cdp.order_mode == "multi"
    assert b.events == {ev.IDENTIFIED, ev.LINE_REMOVED}  # OrderCloud's names are accepted


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "storefronts:\n  shop-a:\n    cdp: { url: 'http://x', client_key: k, pos: p }\n"
            "    send: { url: 'http://s' }\n",
            "d.yaml:4: entry shop-a, send.site_id: Field required",
        ),
        (
            "storefronts:\n  default:\n    webhook: { url: 'not a url' }\n",
            "d.yaml:3: entry default, webhook.url: Input should be a valid URL",
        ),
        (
            "storefronts:\n  default:\n    events: [OrderShipped]\n",
            "d.yaml:3: entry default, events: unknown event type 'OrderShipped'",
        ),
        (
            "storefronts:\n  default:\n    cdp: { url: 'http://x', client_key: k, mode: x }\n",
            "d.yaml:3: entry default, cdp.mode: Extra inputs are not permitted",
        ),
        ("clients: {}\n", "d.yaml:1: unknown section 'clients'"),
        ("storefronts: [\n", "d.yaml"),  # a YAML error, with its line
    ],
)
def test_errors_name_the_line_the_entry_and_the_field(text: str, expected: str) -> None:
    with pytest.raises(InvalidDestinations) as caught:
        parse_destinations(text, "d.yaml")
    assert str(caught.value.errors[0]).startswith(expected), str(caught.value.errors[0])


def test_the_tables_limits_apply() -> None:
    deep = "storefronts:\n  default: " + "[" * 100 + "]" * 100 + "\n"
    with pytest.raises(InvalidDestinations, match="nested deeper"):
        parse_destinations(deep, "d.yaml")


def entries(sink: str, b_events: str = "") -> str:
    return f"""
storefronts:
  {CLIENT_ID}:
    cdp: {{ url: "{sink}/a/cdp", client_key: ck-a, pos: shop-a.example }}
    webhook: {{ url: "{sink}/a/hook" }}
  {GLOBEX_CLIENT_ID}:
    cdp: {{ url: "{sink}/b/cdp", client_key: ck-b, pos: shop-b.example }}
    webhook: {{ url: "{sink}/b/hook" }}
    {b_events}
  default:
    webhook: {{ url: "{sink}/other/hook" }}
"""


def hooks(sitecore: FakeSitecore, prefix: str) -> list[dict]:
    return [json.loads(r["body"]) for r in sitecore.received(prefix)]


@pytest.mark.e2e
def test_two_api_clients_events_land_only_at_their_own_destinations(tmp_path: Path) -> None:
    sitecore = FakeSitecore()
    destinations = tmp_path / "destinations.yaml"
    with running(sitecore) as sink, running(create_sandbox()) as sandbox:
        destinations.write_text(entries(sink))
        settings = Settings(
            upstream_url=sandbox,
            store=tmp_path / "gw.db",  # type: ignore[arg-type]
            destinations=destinations,
            cdp_url=f"{sink}/a/cdp",  # the browser ids are minted here
            cdp_client_key="ck-a",
        )
        app = create_app(settings)
        with running(app, lifespan="on") as gateway:
            a, b = Storefront(gateway), Storefront(gateway)
            a.grant(grant_type="client_credentials")  # CLIENT_ID: storefront A
            a("POST", "/v1/cart/lineitems", 201, json={"ProductID": "p-001", "Quantity": 1})
            b.grant(  # GLOBEX_CLIENT_ID: storefront B
                client_id=GLOBEX_CLIENT_ID,
                grant_type="password",
                username="gina",
                password="gina-pass",
            )
            b("POST", "/v1/cart/lineitems", 201, json={"ProductID": "p-002", "Quantity": 1})

            assert wait_for(
                lambda: (
                    len(hooks(sitecore, "/a/hook")) >= 1 and len(hooks(sitecore, "/b/hook")) >= 2
                )
            )
            time.sleep(0.3)  # anything misrouted would have arrived by now
            a_events = hooks(sitecore, "/a/hook")
            b_events = hooks(sitecore, "/b/hook")
            assert [e["type"] for e in a_events] == [
                "sitecore.backbone.messages.orders.lines.added"
            ]
            assert {e["visitor"] for e in b_events} == {"globex-gina"}
            assert {e["type"].removeprefix("sitecore.backbone.messages.") for e in b_events} == {
                ev.IDENTIFIED,
                ev.LINE_ADDED,
            }
            assert not sitecore.received("/other/hook")
            cdp_a = sitecore.json("/a/cdp/v1.2/events")
            cdp_b = sitecore.json("/b/cdp/v1.2/events")
            assert cdp_a and {e["client_key"] for e in cdp_a} == {"ck-a"}
            assert {e["pos"] for e in cdp_a} == {"shop-a.example"}
            assert cdp_b and {e["client_key"] for e in cdp_b} == {"ck-b"}
            assert "IDENTITY" in [e["type"] for e in cdp_b]
            assert not [e for e in cdp_a if e["type"] == "IDENTITY"]
            names = set(app.tracking._dispatchers)  # noqa: SLF001 - one per (client, destination)
            assert f"cdp@{GLOBEX_CLIENT_ID}" in names and f"webhook@{CLIENT_ID}" in names

            # A reload: storefront B now wants only logins; a bad edit changes nothing.
            unchanged = app.tracking._dispatchers[f"webhook@{CLIENT_ID}"]  # noqa: SLF001
            destinations.write_text(entries(sink).replace("webhook: {", "webhook: {{ oops"))
            time.sleep(1.5)
            destinations.write_text(entries(sink, "events: [UserLoggedIn]"))
            assert wait_for(
                lambda: app.tracking.routing.wanted.get(GLOBEX_CLIENT_ID) == {ev.IDENTIFIED},
                timeout=10,
            )
            before = len(hooks(sitecore, "/b/hook"))
            b("POST", "/v1/cart/lineitems", 201, json={"ProductID": "p-003", "Quantity": 1})
            a("POST", "/v1/cart/lineitems", 201, json={"ProductID": "p-004", "Quantity": 1})
            assert wait_for(lambda: len(hooks(sitecore, "/a/hook")) >= 2)
            time.sleep(0.3)
            assert len(hooks(sitecore, "/b/hook")) == before
            assert app.tracking._dispatchers[f"webhook@{CLIENT_ID}"] is unchanged  # noqa: SLF001
