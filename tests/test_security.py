"""Replays of what an attacker with no credentials tried (issue 7), each asserting the fix.

A real gateway (uvicorn, real sockets) with tracking and a decision table that matches everyone
stands in front of the fake upstream, which answers 2xx to anything: so a forged token that got
past identity would show up as an `X-Decision`, an event or an exposure.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.app import Gateway, create_app
from gateway.headers import MAX_USER_AGENT, device_of, is_bot, user_agent
from gateway.identity import Identity, KeyFetchLimit
from gateway.serving import serve_in_thread as running
from gateway.settings import Settings
from tests.fake_upstream import FakeUpstream
from tests.tokens import JWK, ME, OTHER_KEY, hs256, signed, unsigned

pytestmark = pytest.mark.e2e

TABLES = """
tables:
  - id: everyone
    applies_to: me/products
    rules:
      - id: all
        then: { sortBy: Name }
"""


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[str, FakeUpstream]]:
    fake = FakeUpstream()
    with running(fake) as url:
        yield url, fake


@pytest.fixture
def gateway(upstream, tmp_path: Path) -> Iterator[tuple[str, Gateway]]:
    tables = tmp_path / "tables.yaml"
    tables.write_text(TABLES)
    settings = Settings(
        upstream_url=upstream[0],
        store=tmp_path / "gw.db",
        decisions=tables,
        max_body_bytes=100_000,
    )
    app = create_app(settings)
    with running(app, lifespan="on") as url:
        yield url, app


def products(url: str, token: str, **headers: str) -> httpx.Response:
    """A tracked (search) and decided list call."""
    auth = {"Authorization": f"Bearer {token}", **headers}
    return httpx.get(url + "/v1/me/products?search=watch", headers=auth)


def exposures(app: Gateway) -> list[dict]:
    return asyncio.run(app.state.exposures.report())


def nothing_recorded(app: Gateway) -> bool:
    return (
        app.tracking.counts["recorded"] == 0
        and not exposures(app)
        and app.decisions.stats["personalized"] == 0
        and asyncio.run(app.state.outbox.recent(10)) == []
    )


FORGED = {
    "alg none": lambda: unsigned(orderid="FORGED1"),
    "HS256": lambda: hs256(orderid="FORGED2"),
    "RS256 with another key": lambda: signed(key=OTHER_KEY, orderid="FORGED3"),
    "unknown kid": lambda: signed(kid="not-a-key", orderid="FORGED4"),
    "no kid": lambda: signed(kid=None, orderid="FORGED5"),
    "kid with ../": lambda: signed(kid="../../v1/me/products?x=", orderid="FORGED6"),
    "expired": lambda: signed(orderid="OLD", exp=int(time.time()) - 5, nbf=0),
}


@pytest.mark.parametrize("make", FORGED.values(), ids=FORGED.keys())
def test_a_forged_or_expired_token_is_nobody(gateway, upstream, make) -> None:
    url, app = gateway
    _, fake = upstream
    before = len(fake.seen)
    for _ in range(3):
        response = products(url, make())
        assert response.status_code == 200  # proxied as OrderCloud answered it...
        assert "x-decision" not in response.headers  # ...but nobody was personalized
    view = httpx.get(url + "/v1/me/products/p1", headers={"Authorization": f"Bearer {make()}"})
    assert view.status_code == 200
    assert nothing_recorded(app)
    paths = [record["raw_path"] for record in fake.seen[before:]]
    assert not any(".." in path for path in paths), paths  # a kid never reaches a path
    assert paths.count("/oauth/certs/not-a-key") <= 1  # unknown kids are remembered


def test_a_verified_token_is_a_shopper(gateway) -> None:
    url, app = gateway
    response = products(url, signed(orderid="REAL1"))
    assert response.headers["x-decision"].startswith("table=everyone;rule=all")
    assert app.decisions.stats["personalized"] == 1


def test_no_decision_header_or_exposure_when_ordercloud_refuses(gateway) -> None:
    url, app = gateway
    response = products(url, signed(orderid="REAL2"), **{"X-Fake-Status": "401"})
    assert response.status_code == 401
    assert "x-decision" not in response.headers  # no segment leaks into a refusal
    assert not exposures(app) and app.tracking.counts["recorded"] == 0


def test_chunked_body_over_the_limit_is_413_and_nothing_is_sent(gateway, upstream) -> None:
    url, app = gateway
    _, fake = upstream
    before = len(fake.seen)
    response = httpx.post(url + "/v1/echo", content=iter([b"y" * 60_000] * 3))
    assert response.status_code == 413
    assert len(fake.seen) == before
    assert app.proxy.counters["upstream_502"] == 0


def raw_request(url: str, request: bytes, close_after: bool = False) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        if close_after:
            return b""
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        return answer


def test_header_bytes_pass_through_unchanged(gateway, upstream) -> None:
    url, _ = gateway
    _, fake = upstream
    raw_request(url, "GET /v1/echo HTTP/1.1\r\nHost: x\r\nX-Note: café\r\n\r\n".encode())
    seen = [v for k, v in fake.seen[-1]["headers"] if k.lower() == "x-note"]
    assert [v.encode("latin-1") for v in seen] == ["café".encode()]


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_client_leaving_mid_body_logs_one_line(gateway, upstream) -> None:
    url, app = gateway
    handler = Collect()
    loggers = [logging.getLogger(n) for n in ("uvicorn.error", "ocgateway.proxy")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        head = b"PUT /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
        raw_request(url, head + b"x" * 10, close_after=True)
        deadline = time.monotonic() + 5
        while not app.proxy.counters["client_gone"] and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    assert app.proxy.counters["client_gone"] == 1
    assert not any("Exception in ASGI" in r.getMessage() for r in handler.records)
    assert not any(r.exc_info for r in handler.records)


# Identity on its own: bounded caches, expiry at every use, kid checks, rate-limited key fetches.


class Upstream:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def get_json(self, path: str, token: str | None, timeout: float | None = None):
        self.calls.append(path)
        if path == "/oauth/certs/k1":
            return 200, JWK
        if path == "/v1/me":
            return 200, ME
        return 404, None


@pytest.mark.anyio
async def test_expiry_is_enforced_at_every_use_not_at_first_sight() -> None:
    now = [time.time()]
    identity = Identity(Upstream().get_json, clock=lambda: now[0])
    token = signed(orderid="o-1", exp=int(now[0]) + 60)
    assert (await identity.visitor(token)).id == "anon-o-1"
    assert identity.peek(token) is not None
    now[0] += 61
    assert identity.peek(token) is None
    assert await identity.visitor(token) is None
    assert await identity.claims(token) is None


@pytest.mark.anyio
async def test_caches_are_bounded_and_never_keyed_by_huge_input() -> None:
    upstream = Upstream()
    identity = Identity(upstream.get_json, cache_size=100)
    huge = signed(orderid="o", padding="x" * 1_000_000)
    assert await identity.visitor(huge) is None  # over the size any real token has
    assert identity.sizes["claims"] == identity.sizes["visitors"] == 0
    for n in range(300):
        await identity.visitor(signed(orderid=f"o-{n}"))
    sizes = identity.sizes
    assert sizes["claims"] == 100 and sizes["visitors"] == 100 and sizes["pending"] == 0


@pytest.mark.anyio
async def test_unknown_kids_cost_one_fetch_and_fetches_are_rate_limited() -> None:
    upstream = Upstream()
    clock = [0.0]
    limit = KeyFetchLimit(per_second=1.0, burst=3, clock=lambda: clock[0])
    identity = Identity(upstream.get_json, key_fetches=limit)
    await asyncio.gather(
        *(identity.visitor(signed(kid="kid-a", orderid=str(n))) for n in range(20))
    )
    assert upstream.calls.count("/oauth/certs/kid-a") == 1  # single flight, then remembered
    for n in range(20):
        await identity.visitor(signed(kid=f"new-{n}", orderid="o"))
    fetched = [c for c in upstream.calls if c.startswith("/oauth/certs/new-")]
    assert len(fetched) == 2  # the burst's remaining two; the rest waits for the refill
    for kid in ("../x", "a/b", "a" * 200, "é", ""):
        assert await identity.visitor(signed(kid=kid, orderid="o")) is None
    assert not any(
        c.startswith("/oauth/certs/") and "new" not in c and "kid-a" not in c
        for c in upstream.calls
    )


def test_user_agent_classification_reads_a_bounded_prefix() -> None:
    huge = "Mozilla/5.0 " + "a" * 1_000_000 + " Googlebot"
    agent = user_agent({"user-agent": huge})
    assert len(agent) == MAX_USER_AGENT
    assert device_of(agent) == "desktop" and not is_bot(agent)  # the tail is never scanned
    assert device_of(user_agent({"user-agent": "Googlebot/2.1 " + "b" * 1_000_000})) == "bot"
