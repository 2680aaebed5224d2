"""The proxy end to end through real sockets: gateway (uvicorn) in front of a fake upstream."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import logging
import socket
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from gateway.app import create_app
from gateway.serving import serve_in_thread as running
from gateway.settings import Settings
from tests.fake_upstream import GZIPPED, FakeUpstream
from tests.servers import free_port, gateway_process
from tests.tokens import signed

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[str, FakeUpstream]]:
    fake = FakeUpstream()
    with running(fake) as url:
        yield url, fake


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Settings]:
    """Makes settings for a test gateway, each with its own store in a temporary folder."""
    folder = tmp_path_factory.mktemp("stores")
    numbers = itertools.count()

    def make(upstream_url: str, **overrides: object) -> Settings:
        values = dict(
            upstream_url=upstream_url,
            tracking=False,
            max_body_bytes=1_000_000,
            upstream_timeout=2.0,
            cors_origins=["https://shop.example"],
            store=folder / f"gw-{next(numbers)}.db",
        )
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return make


@pytest.fixture(scope="module")
def gateway(upstream: tuple[str, FakeUpstream], settings) -> Iterator[str]:
    with running(create_app(settings(upstream[0])), lifespan="on") as url:
        yield url


def last(fake: FakeUpstream) -> dict:
    return fake.seen[-1]


def header(record: dict, name: str) -> list[str]:
    return [v for k, v in record["headers"] if k.lower() == name]


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
def test_every_method_passes_through_identically(upstream, gateway, method):
    url, fake = upstream
    body = b'{"ProductID":"p-001"}' if method in ("POST", "PUT", "PATCH") else None
    headers = {"Authorization": "Bearer abc.def.ghi", "Content-Type": "application/json"}
    direct = httpx.request(method, url + "/v1/echo/x", content=body, headers=headers)
    direct_seen = last(fake)
    proxied = httpx.request(method, gateway + "/v1/echo/x", content=body, headers=headers)
    proxied_seen = last(fake)

    assert proxied.status_code == direct.status_code
    assert proxied_seen["method"] == method
    assert proxied_seen["body"] == direct_seen["body"]
    assert header(proxied_seen, "authorization") == ["Bearer abc.def.ghi"]
    for name in ("content-type", "x-upstream", "etag"):
        assert proxied.headers.get(name) == direct.headers.get(name)
    if method != "HEAD":  # the echo differs by the X-Forwarded-* headers, so compare framing
        assert int(proxied.headers.get("content-length", 0)) == len(proxied.content)
    if method not in ("HEAD", "DELETE"):
        echoed = json.loads(proxied.content)
        assert echoed["raw_path"] == "/v1/echo/x"


def test_raw_query_survives_byte_for_byte(upstream, gateway):
    _, fake = upstream
    query = (
        "ID=a%7Cb%7Cc&xp.Color=!red&xp.Color=!blue&xp.Price=%3E10&Name=Bik*&IsX=false"
        "&search=bike&searchOn=Name%2Cxp.Color&sortBy=!Name%2CID&page=2&pageSize=100&x=a+b%20c"
    )
    response = httpx.get(
        gateway + "/v1/me/products?" + query, headers={"Authorization": "Bearer t"}
    )
    assert response.status_code == 200
    assert last(fake)["query"] == query
    assert last(fake)["raw_path"] == "/v1/me/products"


def test_raw_path_is_not_reencoded(upstream, gateway):
    _, fake = upstream
    httpx.get(gateway + "/v1/me/products/p%20001%21")
    assert last(fake)["raw_path"] == "/v1/me/products/p%20001%21"


def test_hop_by_hop_headers_are_dropped_both_ways(upstream, gateway):
    _, fake = upstream
    response = httpx.get(
        gateway + "/v1/hop",
        headers={
            "Connection": "keep-alive, X-Secret",
            "X-Secret": "s",
            "TE": "trailers",
            "Keep-Alive": "timeout=5",
            "Proxy-Authorization": "Basic x",
            "X-Other": "o",
        },
    )
    seen = last(fake)
    for name in ("x-secret", "te", "keep-alive", "proxy-authorization"):
        assert header(seen, name) == [], name
    assert header(seen, "x-other") == ["o"]
    assert "x-internal" not in response.headers
    assert "keep-alive" not in response.headers
    assert response.headers["x-kept"] == "yes"


def test_host_is_the_upstreams_and_forwarded_headers_are_set(upstream, gateway):
    url, fake = upstream
    httpx.get(gateway + "/v1/echo", headers={"Host": "evil.example", "X-Forwarded-For": "6.6.6.6"})
    seen = last(fake)
    assert header(seen, "host") == [url.removeprefix("http://")]
    # The test client is on 127.0.0.1, a trusted proxy by default, so its XFF is extended.
    assert header(seen, "x-forwarded-for") == ["6.6.6.6, 127.0.0.1"]
    assert header(seen, "x-forwarded-proto") == ["http"]
    assert header(seen, "x-forwarded-host") == ["evil.example"]


def test_untrusted_peer_cannot_spoof_forwarded_for(upstream, settings):
    url, fake = upstream
    app = create_app(settings(url, trusted_proxies=["10.9.9.9"]))
    with running(app, lifespan="on") as gw:
        httpx.get(gw + "/v1/echo", headers={"X-Forwarded-For": "6.6.6.6"})
    assert header(last(fake), "x-forwarded-for") == ["127.0.0.1"]


def test_content_encoding_passes_through_untouched(gateway):
    with httpx.Client() as client:
        with client.stream("GET", gateway + "/v1/gzip", headers={"Accept-Encoding": "gzip"}) as r:
            raw = b"".join(r.iter_raw())
    assert r.headers["content-encoding"] == "gzip"
    assert raw == GZIPPED
    assert gzip.decompress(raw).startswith(b'{"Items":[]}')


def test_upstream_error_statuses_pass_through(gateway):
    response = httpx.get(gateway + "/v1/status/503")
    assert response.status_code == 503
    assert response.json() == {"Errors": [{"ErrorCode": "Boom"}]}


def test_upstream_down_is_502_in_ordercloud_shape(settings):
    app = create_app(settings(f"http://127.0.0.1:{free_port()}"))
    with running(app, lifespan="on") as gw:
        response = httpx.get(gw + "/v1/me")
    assert response.status_code == 502
    error = response.json()["Errors"][0]
    assert error["ErrorCode"] == "Gateway.UpstreamUnavailable"
    assert set(error) == {"ErrorCode", "Message", "Data"}


def test_upstream_timeout_is_504(upstream, settings):
    app = create_app(settings(upstream[0], upstream_timeout=0.3))
    with running(app, lifespan="on") as gw:
        response = httpx.get(gw + "/v1/slow", timeout=10)
    assert response.status_code == 504
    assert response.json()["Errors"][0]["ErrorCode"] == "Gateway.UpstreamTimeout"


def test_body_over_the_limit_is_413_and_never_forwarded(upstream, gateway):
    _, fake = upstream
    before = len(fake.seen)
    response = httpx.post(gateway + "/v1/echo", content=b"x" * 1_000_001)
    assert response.status_code == 413
    assert response.json()["Errors"][0]["ErrorCode"] == "Request.TooLarge"
    assert len(fake.seen) == before


def test_chunked_body_over_the_limit_is_refused(upstream, gateway):
    _, fake = upstream

    def chunks():
        for _ in range(20):
            yield b"y" * 100_000

    before = len(fake.seen)
    response = httpx.post(gateway + "/v1/echo", content=chunks())
    assert response.status_code == 413
    assert response.json()["Errors"][0]["ErrorCode"] == "Request.TooLarge"
    assert len(fake.seen) == before  # nothing of it went upstream


def test_large_request_body_streams_through(upstream, gateway):
    _, fake = upstream
    body = b"z" * 900_000
    response = httpx.put(gateway + "/v1/echo", content=body)
    assert response.status_code == 200
    assert last(fake)["body"] == body.decode()


def test_cors_preflight_is_answered_by_the_gateway(upstream, gateway):
    _, fake = upstream
    before = len(fake.seen)
    response = httpx.options(
        gateway + "/v1/me/products",
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://shop.example"
    assert "GET" in response.headers["access-control-allow-methods"]
    assert "authorization" in response.headers["access-control-allow-headers"].lower()
    assert len(fake.seen) == before  # never forwarded


def test_cors_refuses_unknown_origins_and_decorates_proxied_answers(gateway):
    refused = httpx.options(
        gateway + "/v1/me",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert refused.status_code == 400
    proxied = httpx.get(gateway + "/v1/echo", headers={"Origin": "https://shop.example"})
    assert proxied.headers["access-control-allow-origin"] == "https://shop.example"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/../admin",
        "/v1/%2e%2e/admin",
        "/v1/me%2Fproducts",
        "/v1/me/..%2F..%2Fx",
        "/v1/a\\b",
        "/admin2",
        "/etc/passwd",
        "/v1/%2E%2E/%2E%2E/x",
        "/v1/.%2e/x",
    ],
)
def test_path_escapes_are_refused_without_calling_upstream(upstream, gateway, path):
    _, fake = upstream
    before = len(fake.seen)
    with socket.create_connection(("127.0.0.1", int(gateway.rsplit(":", 1)[1]))) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        reply = sock.recv(65536).decode("latin-1")
    assert reply.split(" ")[1] in ("400", "404"), reply
    assert len(fake.seen) == before


def test_absolute_form_request_cannot_pick_another_host(upstream, gateway):
    url, fake = upstream
    port = int(gateway.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            b"GET http://evil.example:81/v1/echo HTTP/1.1\r\nHost: evil.example:81\r\n"
            b"Connection: close\r\n\r\n"
        )
        reply = sock.recv(65536).decode("latin-1")
    assert reply.startswith("HTTP/1.1 200")
    seen = last(fake)
    assert seen["raw_path"] == "/v1/echo"
    assert header(seen, "host") == [url.removeprefix("http://")]


def test_tokens_never_reach_the_logs(upstream, caplog, settings):
    url, _ = upstream
    logging.getLogger("ocgateway.access").setLevel(logging.INFO)
    token = "eyJhbGciOiJSUzI1NiJ9.eyJ1c3IiOiJzZWNyZXQifQ.c2lnbmF0dXJlLXNlY3JldA"
    with caplog.at_level(logging.DEBUG):
        with running(create_app(settings(url)), lifespan="on") as gw:
            httpx.put(
                gw + f"/v1/me/orders?anonUserToken={token}&x=1",
                headers={"Authorization": f"Bearer {token}"},
            )
            httpx.post(
                gw + "/oauth/token",
                content=f"grant_type=password&username=u&password={token}",
                headers={"Authorization": f"Bearer {token}"},
            )
            httpx.get(
                gw + f"/v1/me?access_token={token}", headers={"Authorization": f"Bearer {token}"}
            )
    # Only the server side's records: the test's own HTTP client logs its URLs too.
    text = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))
    )
    assert "/v1/me/orders?anonUserToken=REDACTED&x=1" in text
    assert token not in text
    assert "signature-secret" not in text


def _peak_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_20mb_answer_streams_without_the_gateway_holding_it(upstream, tmp_path):
    url, _ = upstream
    env = {"OCGW_UPSTREAM_URL": url, "OCGW_TRACKING": "false", "OCGW_STORE": str(tmp_path / "s.db")}
    with gateway_process(env) as (gw, process):
        httpx.get(gw + "/v1/echo")  # warm up: pools, imports
        before = _peak_rss_kb(process.pid)
        received = 0
        with httpx.stream("GET", gw + "/v1/big", timeout=30) as response:
            for chunk in response.iter_raw():
                received += len(chunk)
        growth_mb = (_peak_rss_kb(process.pid) - before) / 1024
    assert received == 20 * 1024 * 1024
    assert growth_mb < 8, f"gateway peak memory grew {growth_mb:.1f} MB for a 20 MB answer"


def test_health_and_readiness(upstream, gateway):
    assert httpx.get(gateway + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(gateway + "/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"upstream": "ok", "store": "ok"}
    assert "proxy" in ready.json()["counters"]


def test_readiness_fails_when_the_upstream_is_down(settings):
    app = create_app(settings(f"http://127.0.0.1:{free_port()}"))
    with running(app, lifespan="on") as gw:
        ready = httpx.get(gw + "/readyz")
        assert httpx.get(gw + "/healthz").status_code == 200
    assert ready.status_code == 503
    assert ready.json()["checks"]["upstream"] != "ok"


def test_serve_with_two_workers_logs_redacted_access_lines(upstream, tmp_path):
    url, _ = upstream
    token = "eyJhbGciOiJub25lIn0.eyJvcmRlcmlkIjoic2VjcmV0In0.c2lnbmF0dXJl"
    env = {
        "OCGW_UPSTREAM_URL": url,
        "OCGW_TRACKING": "false",
        "OCGW_ACCESS_LOG": "true",
        "OCGW_STORE": str(tmp_path / "s.db"),
    }
    with gateway_process(env, workers=2) as (gw, process):
        for _ in range(4):  # whichever worker answers, each line must be there and redacted
            response = httpx.put(
                gw + f"/v1/me/orders?anonUserToken={token}",
                headers={"Authorization": f"Bearer {token}"},
            )
            assert response.status_code == 200
        process.terminate()
        output = process.communicate(timeout=20)[0].decode()
    assert output.count("PUT /v1/me/orders?anonUserToken=REDACTED 200") == 4, output
    assert token not in output


def test_list_calls_resolve_the_shopper_only_when_a_table_could_apply(upstream, settings, tmp_path):
    url, fake = upstream
    auth = {"Authorization": f"Bearer {signed()}"}

    def me_calls() -> int:
        return sum(1 for record in fake.seen if record["raw_path"] == "/v1/me")

    before = me_calls()
    with running(create_app(settings(url)), lifespan="on") as gw:
        assert httpx.get(gw + "/v1/me/products", headers=auth).status_code == 200
    assert me_calls() == before  # no table: nothing to resolve the shopper for

    tables = tmp_path / "tables.yaml"
    tables.write_text(
        "tables:\n  - id: t\n    applies_to: me/products\n    rules:\n"
        "      - id: r\n        then: { sortBy: Name }\n"
    )
    with running(create_app(settings(url, decisions=tables)), lifespan="on") as gw:
        response = httpx.get(gw + "/v1/me/products", headers=auth)
    assert "table=t;rule=r" in response.headers["x-decision"]
    assert me_calls() == before + 1


def test_a_raising_hook_fails_open_and_is_counted_once_by_the_proxy(upstream, settings, caplog):
    """Tracking and decisions raise; the proxy alone catches, logs and counts, and the call goes
    on as a plain proxy call."""
    url, fake = upstream

    class Raising:
        def wants(self, call):
            return True

        async def record(self, call, status, body, exposures=()):
            raise RuntimeError("outbox down")

        def applies(self, call):
            return True

        async def decide(self, call):
            raise RuntimeError("tables broken")

    app = create_app(settings(url))
    with running(app, lifespan="on") as gw:
        app.proxy.tracker = app.proxy.decider = Raising()
        response = httpx.get(
            gw + "/v1/me/products?search=x", headers={"Authorization": f"Bearer {signed()}"}
        )
    assert response.status_code == 200 and "x-decision" not in response.headers
    assert last(fake)["query"] == "search=x"  # forwarded unchanged
    assert app.proxy.counters["decisions_failures"] == 1
    assert app.proxy.counters["tracking_failures"] == 1
    failures = [r for r in caplog.records if "hook failed" in r.getMessage()]
    assert len(failures) == 2 and all(r.exc_info for r in failures)


def test_a_decision_that_hangs_is_abandoned_after_its_budget(upstream, settings):
    """A store that hangs (Redis stopped, not refused) must not hold a list call: the proxy
    gives up on the decision shortly after the personalization budget and forwards unchanged."""
    url, fake = upstream

    class Hanging:
        def applies(self, call):
            return True

        async def decide(self, call):
            await asyncio.sleep(30)

    app = create_app(settings(url, personalize_timeout_ms=100))
    with running(app, lifespan="on") as gw:
        app.proxy.decider = Hanging()
        started = time.monotonic()
        response = httpx.get(
            gw + "/v1/me/products?x=1", headers={"Authorization": f"Bearer {signed()}"}
        )
        elapsed = time.monotonic() - started
    assert response.status_code == 200 and "x-decision" not in response.headers
    assert last(fake)["query"] == "x=1"
    assert app.proxy.counters["decisions_timeouts"] == 1
    assert elapsed < 10  # bounded by the budget, not by the hung store (30 s)
