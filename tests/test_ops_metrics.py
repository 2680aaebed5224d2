"""Prometheus /metrics: OpenTelemetry names, bounded labels after real traffic, who may scrape,
and one sum across `--workers N` processes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from gateway.app import create_app
from gateway.operations import _COMPILED
from gateway.sandbox import create_app as create_sandbox
from gateway.serving import serve_in_thread as running
from gateway.settings import Settings
from tests.fake_sitecore import FakeSitecore
from tests.fake_upstream import FakeUpstream
from tests.servers import gateway_process, wait_for
from tests.shoppers import bearer, login

pytestmark = pytest.mark.e2e

ROUTES = {entry[4] for entries in _COMPILED.values() for entry in entries} | {"other"}
CLASSES = {"1xx", "2xx", "3xx", "4xx", "5xx", "error"}


DEMO = files("decisions").joinpath("demo.yaml").read_text()


def samples(text: str) -> list[Sample]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(text: str, name: str, **labels: str) -> float:
    return sum(
        s.value
        for s in samples(text)
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[tuple[str, Settings]]:
    tables = tmp_path / "tables.yaml"
    tables.write_text(DEMO)
    sitecore = FakeSitecore()
    with running(sitecore) as sink, running(create_sandbox()) as sandbox:
        settings = Settings(
            upstream_url=sandbox,
            store=tmp_path / "gw.db",  # type: ignore[arg-type]
            webhook_url=f"{sink}/hook",
            decisions=tables,
            metrics_interval=0.1,
        )
        with running(create_app(settings), lifespan="on") as gateway:
            yield gateway, settings


def browse(gateway: str) -> None:
    """A repeat customer logs in, lists, searches, views two products and adds to the cart."""
    with httpx.Client(base_url=gateway, timeout=10) as http:
        http.headers.update(bearer(login(gateway, "jane", http=http)))
        assert http.get("/v1/me/products").status_code == 200
        assert http.get("/v1/me/products", params={"search": "bike"}).status_code == 200
        for product in ("p-001", "p-002"):
            assert http.get(f"/v1/me/products/{product}").status_code == 200
        line = {"ProductID": "p-001", "Quantity": 1}
        assert http.post("/v1/cart/lineitems", json=line).status_code == 201
        assert http.get("/v1/nope/nope").status_code == 404


def test_metrics_after_traffic_use_otel_names_and_bounded_labels(shop):
    gateway, _ = shop
    browse(gateway)

    def delivered() -> str | None:
        text = httpx.get(gateway + "/metrics").text
        done = value(
            text, "ocgw_delivery_attempts_total", destination="webhook", outcome="delivered"
        )
        sampled = 'ocgw_outbox_pending{destination="webhook"}' in text
        return text if done >= 3 and sampled else None

    text = wait_for(delivered)
    assert text, "no deliveries were counted"
    found = samples(text)
    server = [s for s in found if s.name.startswith("http_server_request_duration_seconds")]
    assert {s.labels["http_route"] for s in server} >= {
        "/oauth/token",
        "/v1/me/products",
        "/v1/me/products/{product}",
        "/v1/cart/lineitems",
        "other",
    }
    for s in server:  # bounded: templates, standard methods, status classes; never raw ids
        assert s.labels["http_route"] in ROUTES, s
        assert s.labels["http_response_status_code"] in CLASSES, s
        assert "p-001" not in str(s.labels) and "jane" not in str(s.labels)
    buckets = {
        s.labels["le"] for s in server if s.name.endswith("_bucket") and s.labels["le"] != "+Inf"
    }
    assert buckets == {
        str(float(b)) for b in (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1)
    } | {str(float(b)) for b in (2.5, 5, 7.5, 10)}
    count = "http_server_request_duration_seconds_count"
    assert (
        value(text, count, http_route="/v1/me/products/{product}", http_request_method="GET") >= 2
    )
    assert value(text, count, http_route="other", http_response_status_code="4xx") >= 1
    client = "http_client_request_duration_seconds_count"
    assert value(text, client, server="ordercloud") >= 7
    assert value(text, client, server="webhook", http_response_status_code="2xx") >= 3
    assert value(text, "ocgw_decisions_total") >= 1  # jane is a repeat customer: the demo rule
    tables = {s.labels["table"] for s in found if s.name == "ocgw_decisions_total"}
    assert tables and all(t in DEMO for t in tables)  # ids from the live document
    for name in ("ocgw_outbox_pending", "ocgw_outbox_dead", "ocgw_outbox_oldest_age_seconds"):
        assert any(s.name == name and s.labels == {"destination": "webhook"} for s in found), name
    assert value(text, "ocgw_breaker_state", destination="webhook") == 0
    assert value(text, "ocgw_store_up") == 1
    assert value(text, "ocgw_tracking_total", event="recorded") >= 4


def test_metrics_are_for_loopback_peers_or_the_bearer_token_only(tmp_path):
    fake = FakeUpstream()
    with running(fake) as upstream:
        open_ = Settings(upstream_url=upstream, store=tmp_path / "a.db", tracking=False)  # type: ignore[arg-type]
        with running(create_app(open_), lifespan="on") as gateway:
            assert httpx.get(gateway + "/metrics").status_code == 200
            forwarded = {"X-Forwarded-For": "203.0.113.9"}  # a proxy in front relayed it
            assert httpx.get(gateway + "/metrics", headers=forwarded).status_code == 403
        locked = Settings(
            upstream_url=upstream,
            store=tmp_path / "b.db",  # type: ignore[arg-type]
            tracking=False,
            metrics_token="scrape-me",
        )
        with running(create_app(locked), lifespan="on") as gateway:
            assert httpx.get(gateway + "/metrics").status_code == 403
            wrong = {"Authorization": "Bearer nope"}
            assert httpx.get(gateway + "/metrics", headers=wrong).status_code == 403
            right = {"Authorization": "Bearer scrape-me"}
            response = httpx.get(gateway + "/metrics", headers=right)
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/plain")
        off = Settings(
            upstream_url=upstream, store=tmp_path / "c.db", tracking=False, metrics=False
        )  # type: ignore[arg-type]
        with running(create_app(off), lifespan="on") as gateway:
            assert httpx.get(gateway + "/metrics").status_code == 404


def test_two_workers_report_one_sum_from_any_worker(tmp_path):
    fake = FakeUpstream()
    with running(fake) as upstream:
        env = {
            "OCGW_UPSTREAM_URL": upstream,
            "OCGW_STORE": str(tmp_path / "gw.db"),
            "OCGW_TRACKING": "false",
        }
        with gateway_process(env, workers=2) as (gateway, _):
            for _ in range(40):  # a new connection each: the kernel spreads them over workers
                with httpx.Client() as http:
                    assert http.get(gateway + "/v1/echo/w").status_code == 200
            time.sleep(0.2)
            totals = set()
            for _ in range(6):
                with httpx.Client() as http:
                    text = http.get(gateway + "/metrics").text
                totals.add(
                    value(text, "http_server_request_duration_seconds_count", http_route="other")
                )
    assert totals == {40.0}
