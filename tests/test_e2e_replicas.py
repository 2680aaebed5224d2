"""Many replicas act as one gateway (issue 8), end to end: real `ocgateway serve` processes on one
Redis (or one SQLite file), the sandbox as upstream and a fake webhook on loopback sockets.

What is checked is what an operator running N replicas relies on: work a replica held when it
was SIGKILLed is delivered by a survivor, under the same event id and in each visitor's order; a
table published or a profile changed through one replica is what the others decide with; a Redis
outage costs the storefront nothing and loses no acknowledged event.

Short leases and holds (`OCGW_LEASE_SECONDS`, `OCGW_HOLD_GRACE`, `OCGW_UPSTREAM_TIMEOUT`) keep each
test within seconds; every wait polls against a deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from redis.asyncio import Redis

from gateway.sandbox import create_app as create_sandbox
from gateway.sandbox.catalog import CLIENT_ID
from gateway.serving import serve_in_thread as running
from state import events as ev
from state.redis.exposures import RedisExposures
from state.redis.profiles import RedisProfiles
from tests.fake_sitecore import FakeSitecore
from tests.redisserver import RedisProcess
from tests.redisserver import own_redis as redis_process
from tests.servers import gateway_process, wait_for
from tests.shoppers import bearer, login
from tracking.destinations.webhook import PREFIX

pytestmark = pytest.mark.e2e

ADMIN = {"Authorization": "Bearer replica-admin"}
HOOK = "/hook"
LINE_ADDED = PREFIX + ev.LINE_ADDED
SHOPPERS = 8


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    with redis_process(tmp_path / "redis") as server:
        yield server


@dataclass
class Rig:
    sandbox: str
    sink: str
    sitecore: FakeSitecore
    folder: Path

    def env(self, store: str) -> dict[str, str]:
        """Settings for a replica: leases and holds short enough for a test to wait them out."""
        return {
            "OCGW_UPSTREAM_URL": self.sandbox,
            "OCGW_STORE": store,
            "OCGW_REDIS_PREFIX": f"ocgw-e2e-{uuid.uuid4().hex[:8]}:",
            "OCGW_SPOOL": str(self.folder / "spool.db"),
            "OCGW_WEBHOOK_URL": self.sink + HOOK,
            "OCGW_LEASE_SECONDS": "2",
            "OCGW_UPSTREAM_TIMEOUT": "5",
            "OCGW_HOLD_GRACE": "1",
            "OCGW_ADMIN_TOKEN": ADMIN["Authorization"].split()[1],
            "OCGW_LOG_LEVEL": "warning",
        }

    def log(self, name: str) -> Path:
        return self.folder / f"{name}.log"

    def webhook_down(self) -> None:
        with self.sitecore.lock:
            self.sitecore.failures[HOOK] = [503] * 1_000_000

    def webhook_up(self) -> None:
        with self.sitecore.lock:
            self.sitecore.failures.pop(HOOK, None)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    sitecore = FakeSitecore()
    with running(sitecore) as sink, running(create_sandbox()) as sandbox:
        yield Rig(sandbox, sink, sitecore, tmp_path)


def line_deliveries(sitecore: FakeSitecore) -> list[tuple[str, str]]:
    """(line item id, event id) of every line-added event the webhook received, in arrival order."""
    out = []
    for event in sitecore.json(HOOK):
        line = (event.get("payload") or {}).get("lineitem") or {}
        if event.get("type") == LINE_ADDED and line.get("ID"):
            out.append((str(line["ID"]), str(event["id"])))
    return out


def anonymous_token(http: httpx.Client, gateway: str) -> dict[str, str]:
    answer = http.post(
        gateway + "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": CLIENT_ID},
    )
    answer.raise_for_status()
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def shopper(http: httpx.Client, gateway: str, username: str) -> dict[str, str]:
    return bearer(login(gateway, username, http=http))


@dataclass
class Shopper:
    """One anonymous shopper: the line items the gateway acknowledged (201), in the order it did."""

    token: dict[str, str]
    acked: list[str] = field(default_factory=list)
    products: list[str] = field(default_factory=list)  # of the acknowledged line items
    acked_at: list[float] = field(default_factory=list)
    via: list[str] = field(default_factory=list)
    unanswered: int = 0  # calls whose answer never came (the replica died mid-call)
    errors: list[str] = field(default_factory=list)  # answers the sandbox would not have given
    slowest: float = 0.0  # seconds, the slowest acknowledged call
    decided: int = 0  # list answers that carried an X-Decision: each one an exposure

    def add(self, http: httpx.Client, gateway: str, product: str) -> None:
        start = time.monotonic()
        try:
            answer = http.post(
                gateway + "/v1/cart/lineitems",
                headers=self.token,
                json={"ProductID": product, "Quantity": 1},
            )
        except httpx.TransportError:
            self.unanswered += 1
            return
        if answer.status_code != 201 or answer.json().get("ProductID") != product:
            self.errors.append(f"POST lineitems {answer.status_code} {answer.text[:200]}")
            return
        self.acked.append(str(answer.json()["ID"]))
        self.products.append(product)
        self.acked_at.append(time.monotonic())
        self.via.append(gateway)
        self.slowest = max(self.slowest, self.acked_at[-1] - start)


def check_delivered(sitecore: FakeSitecore, shoppers: list[Shopper]) -> None:
    """Every acknowledged line item delivered under exactly one event id, and each shopper's
    items first delivered in the order they were acknowledged."""
    deliveries = line_deliveries(sitecore)
    ids: dict[str, set[str]] = {}
    first: list[str] = []
    for line, event_id in deliveries:
        if line not in ids:
            first.append(line)
        ids.setdefault(line, set()).add(event_id)
    acked = [line for s in shoppers for line in s.acked]
    missing = [line for line in acked if line not in ids]
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged line items never delivered"
    changed = {line: sorted(ids[line]) for line in acked if len(ids[line]) != 1}
    assert not changed, f"redelivered under another event id: {changed}"
    for n, shopper in enumerate(shoppers):
        mine = set(shopper.acked)
        order = [line for line in first if line in mine]
        assert order == shopper.acked, f"shopper {n}: delivered out of acknowledged order"


def run_all(work: list[Callable[[], None]]) -> list[threading.Thread]:
    threads = [threading.Thread(target=w, daemon=True) for w in work]
    for thread in threads:
        thread.start()
    return threads


def join_all(threads: list[threading.Thread], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "shoppers still running"


# -- 1 and 2: SIGKILL one of two replicas under load ------------------------------------------

ITEMS = 30  # line items per shopper: products p-001..p-030, one line each


@pytest.mark.parametrize("backend", ["redis", "sqlite"])
def test_a_killed_replica_s_acknowledged_events_are_delivered_by_the_survivor(
    backend: str, rig: Rig, request: pytest.FixtureRequest
) -> None:
    """The webhook is down while 8 shoppers add line items through both replicas in turn; one
    replica is SIGKILLed mid-load and never restarted; then the webhook comes back. Whatever the
    dead replica had recorded (and held, leased or not yet released) is the survivor's to send."""
    if backend == "redis":
        store = request.getfixturevalue("own_redis").url
    else:
        store = str(rig.folder / "gw.db")
    env = rig.env(store)
    rig.webhook_down()
    killed = threading.Event()
    with (
        gateway_process(env, output=rig.log("a")) as (a, doomed),
        gateway_process(env, output=rig.log("b")) as (b, _),
        httpx.Client(timeout=15) as http,
    ):
        replicas = [a, b]
        shoppers = [Shopper(anonymous_token(http, replicas[n % 2])) for n in range(SHOPPERS)]

        def shop(n: int) -> Callable[[], None]:
            def run() -> None:
                with httpx.Client(timeout=15) as own:
                    for i in range(ITEMS):
                        target = b if killed.is_set() else replicas[(n + i) % 2]
                        shoppers[n].add(own, target, f"p-{i + 1:03d}")

            return run

        started = time.monotonic()
        threads = run_all([shop(n) for n in range(SHOPPERS)])
        total = SHOPPERS * ITEMS
        wait_for(lambda: sum(len(s.acked) for s in shoppers) >= total // 3, timeout=60)
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait()
        killed.set()
        join_all(threads, 90)
        load_seconds = time.monotonic() - started

        rig.webhook_up()
        back = time.monotonic()
        acked = {line for s in shoppers for line in s.acked}
        wait_for(lambda: acked <= {line for line, _ in line_deliveries(rig.sitecore)}, 90)
        drained_seconds = time.monotonic() - back

    assert not [e for s in shoppers for e in s.errors], [e for s in shoppers for e in s.errors]
    through_dead = sum(via == a for s in shoppers for via in s.via)
    assert through_dead > 0, "the killed replica acknowledged nothing: nothing was tested"
    assert len(acked) >= total // 3
    check_delivered(rig.sitecore, shoppers)
    print(
        json.dumps(
            {
                "backend": backend,
                "acknowledged": len(acked),
                "through_killed": through_dead,
                "unanswered": sum(s.unanswered for s in shoppers),
                "deliveries": len(line_deliveries(rig.sitecore)),
                "load_s": round(load_seconds, 2),
                "delivered_after_webhook_back_s": round(drained_seconds, 2),
            }
        )
    )


# -- 3 and 4: what one replica changes, the other decides with -------------------------------


def publish(http: httpx.Client, gateway: str, source: str) -> int:
    answer = http.post(gateway + "/admin/publish", content=source, headers=ADMIN)
    assert answer.status_code == 201, answer.text
    return int(answer.json()["version"])


def decision(http: httpx.Client, gateway: str, token: dict[str, str]) -> tuple[str, list[str]]:
    """The X-Decision header and the product ids of a two-item product list."""
    answer = http.get(gateway + "/v1/me/products?pageSize=2", headers=token)
    assert answer.status_code == 200, answer.text
    return answer.headers.get("x-decision", ""), [p["ID"] for p in answer.json()["Items"]]


def pinned(*products: str) -> str:
    return (
        "tables:\n"
        "  - id: featured\n"
        "    applies_to: me/products\n"
        "    rules:\n"
        "      - id: pinned\n"
        f"        then: {{ pin: [{', '.join(products)}] }}\n"
    )


def served_within(check: Callable[[], bool], timeout: float) -> float | None:
    """Seconds until `check` first held, polling as fast as the calls go; None if it never did."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
    return None


def test_a_table_published_through_one_replica_is_served_by_the_other_within_a_second(
    rig: Rig, own_redis: RedisProcess
) -> None:
    """Publishing is one admin call to any replica; every other one goes live with it through
    pub/sub (and a one-second poll if a message is lost)."""
    env = rig.env(own_redis.url)
    with (
        gateway_process(env, output=rig.log("a")) as (a, _),
        gateway_process(env, output=rig.log("b")) as (b, _),
        httpx.Client(timeout=10) as http,
    ):
        token = anonymous_token(http, b)
        first = publish(http, a, pinned("p-001", "p-002"))
        assert served_within(lambda: f"version={first}" in decision(http, b, token)[0], 10)
        second = publish(http, a, pinned("p-003", "p-004"))
        elapsed = served_within(lambda: f"version={second}" in decision(http, b, token)[0], 10)
        header, products = decision(http, b, token)
    assert elapsed is not None, "the other replica never served the new version"
    assert elapsed < 1.5, f"served {elapsed:.2f} s after publishing"
    assert "rule=pinned" in header and products == ["p-003", "p-004"]
    print(json.dumps({"published_to_served_s": round(elapsed, 3)}))


SEGMENTED = """
segments:
  repeat: { orders: { min: 1 } }
  newcomer: { orders: 0 }
tables:
  - id: featured
    applies_to: me/products
    hit: first
    rules:
      - id: repeat-picks
        when: { segment: repeat }
        then: { pin: [p-010, p-011] }
      - id: newcomer-picks
        when: { segment: newcomer }
        then: { pin: [p-001, p-002] }
"""


def test_a_profile_changed_through_one_replica_drives_the_other_s_next_decision(
    rig: Rig, own_redis: RedisProcess
) -> None:
    """joe (a newcomer) submits an order through A: B's next list call for him is decided as a
    repeat customer's. jane logs in through A with three past orders: B decides her as one."""
    env = rig.env(own_redis.url)
    with (
        gateway_process(env, output=rig.log("a")) as (a, _),
        gateway_process(env, output=rig.log("b")) as (b, _),
        httpx.Client(timeout=10) as http,
    ):
        version = publish(http, a, SEGMENTED)
        joe = shopper(http, a, "joe")
        assert served_within(lambda: f"version={version}" in decision(http, b, joe)[0], 10)
        header, products = decision(http, b, joe)  # B has now read (and cached) joe's profile
        assert "rule=newcomer-picks" in header and products == ["p-001", "p-002"]

        added = http.post(
            a + "/v1/cart/lineitems", headers=joe, json={"ProductID": "p-005", "Quantity": 1}
        )
        assert added.status_code == 201, added.text
        submitted = http.post(a + "/v1/cart/submit", headers=joe)
        assert submitted.status_code == 201, submitted.text
        joe_after = served_within(lambda: "rule=repeat-picks" in decision(http, b, joe)[0], 5)

        jane = shopper(http, a, "jane")
        jane_after = served_within(lambda: "rule=repeat-picks" in decision(http, b, jane)[0], 5)
        header, products = decision(http, b, jane)
    assert joe_after is not None, "B kept deciding on joe's old profile"
    assert jane_after is not None, "B never saw jane's order history"
    assert products == ["p-010", "p-011"]
    print(
        json.dumps(
            {
                "order_to_decision_s": round(joe_after, 3),
                "login_to_decision_s": round(jane_after, 3),
            }
        )
    )


# -- 5: Redis away for 10 s under load -------------------------------------------------------


@dataclass
class Readiness:
    """What `/readyz` said while Redis was away."""

    answers: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    def degraded(self) -> bool:
        return any(
            code == 200
            and body.get("status") == "degraded"
            and str(body["checks"].get("redis", "")).startswith("degraded")
            for code, body in self.answers
        )

    def most_spooled(self) -> int:
        spooled = 0
        for _, body in self.answers:
            outbox = str(body.get("checks", {}).get("outbox", ""))
            if outbox.startswith("degraded: "):
                spooled = max(spooled, int(outbox.split()[1]))
        return spooled


OUTAGE = 10.0


def profiles_missing(url: str, env: dict[str, str], shoppers: list[Shopper]) -> int:
    """Products acknowledged into carts that the shoppers' profiles (in the gateway's Redis) do
    not show: a profile change made while Redis was away waits and is written once it is back."""

    async def read() -> int:
        client = Redis.from_url(url)
        profiles = RedisProfiles(client, env["OCGW_REDIS_PREFIX"])
        missing = 0
        try:
            for shopper in shoppers:
                token = shopper.token["Authorization"].removeprefix("Bearer ")
                claims = jwt.decode(token, options={"verify_signature": False})
                profile = await profiles.get(f"anon-{claims['orderid']}")
                missing += len(
                    set(shopper.products) - set(profile.cart_products if profile else [])
                )
        finally:
            await client.aclose()
        return missing

    return asyncio.run(read())


def exposures_counted(url: str, env: dict[str, str]) -> int:
    """Exposures the experiment report holds (read straight from the gateway's Redis)."""

    async def read() -> int:
        client = Redis.from_url(url)
        try:
            rows = await RedisExposures(client, env["OCGW_REDIS_PREFIX"]).report()
        finally:
            await client.aclose()
        return sum(row["exposures"] for row in rows)

    return asyncio.run(read())


@pytest.mark.parametrize("outage", ["killed", "hung"])
def test_redis_stopped_for_ten_seconds_under_load_fails_no_call_and_loses_nothing(
    outage: str, rig: Rig, own_redis: RedisProcess
) -> None:
    """Redis is killed and started again 10 s later (same port, same append-only file), or hung
    (SIGSTOP) for 10 s, while 8 shoppers keep adding line items and listing products (a table
    applies, so every list call reads a profile): every call is answered as the sandbox answers
    it, `/readyz` says degraded meanwhile, every acknowledged event is delivered once Redis is
    back (those recorded meanwhile waited in the local spool), and every product put in a cart
    shows in its shopper's profile (changes refused meanwhile waited and went again)."""
    env = rig.env(own_redis.url)
    stop = threading.Event()
    readiness = Readiness()
    with (
        gateway_process(env, output=rig.log("gateway")) as (gateway, _),
        httpx.Client(timeout=30) as http,
    ):
        publish(http, gateway, pinned("p-001", "p-002"))
        shoppers = [Shopper(anonymous_token(http, gateway)) for _ in range(SHOPPERS)]

        def shop(shopper: Shopper) -> Callable[[], None]:
            def run() -> None:
                with httpx.Client(timeout=30) as own:
                    n = 0
                    while not stop.is_set():
                        shopper.add(own, gateway, f"p-{n % 60 + 1:03d}")
                        try:
                            listed = own.get(
                                gateway + "/v1/me/products?pageSize=2", headers=shopper.token
                            )
                            if listed.status_code != 200 or len(listed.json()["Items"]) != 2:
                                shopper.errors.append(f"GET products {listed.status_code}")
                            elif "rule=pinned" in listed.headers.get("x-decision", ""):
                                shopper.decided += 1
                        except httpx.TransportError as exc:
                            shopper.errors.append(f"GET products: {exc!r}")
                        n += 1
                        stop.wait(0.1)  # paced: a storefront's traffic, not a benchmark

            return run

        threads = run_all([shop(s) for s in shoppers])
        assert wait_for(lambda: sum(len(s.acked) for s in shoppers) >= 2 * SHOPPERS, 30)
        own_redis.kill() if outage == "killed" else own_redis.pause()
        down = time.monotonic()
        while time.monotonic() - down < OUTAGE:
            answer = http.get(gateway + "/readyz")
            readiness.answers.append((answer.status_code, answer.json()))
            time.sleep(0.25)
        own_redis.start() if outage == "killed" else own_redis.resume()
        up = time.monotonic()
        during = sum(down <= t < up for s in shoppers for t in s.acked_at)
        before_stop = sum(len(s.acked) for s in shoppers)
        wait_for(lambda: sum(len(s.acked) for s in shoppers) >= before_stop + 2 * SHOPPERS, 30)
        stop.set()
        join_all(threads, 60)

        acked = {line for s in shoppers for line in s.acked}
        wait_for(lambda: acked <= {line for line, _ in line_deliveries(rig.sitecore)}, 60)
        drained = time.monotonic() - up
        ready_again = wait_for(lambda: http.get(gateway + "/readyz").json()["status"] == "ok", 30)
        counters = http.get(gateway + "/readyz").json()["counters"]
        decided = sum(s.decided for s in shoppers)
        counted = wait_for(lambda: exposures_counted(own_redis.url, env) >= decided, 10)
        exposed = exposures_counted(own_redis.url, env)
        wait_for(lambda: profiles_missing(own_redis.url, env, shoppers) == 0, 40)
        unlearned = profiles_missing(own_redis.url, env, shoppers)

    errors = [e for s in shoppers for e in s.errors]
    assert not errors, f"{len(errors)} storefront calls failed: {errors[:5]}"
    assert not any(s.unanswered for s in shoppers)
    assert during > 0, "no line item was acknowledged while Redis was down"
    assert readiness.degraded(), f"/readyz never said degraded: {readiness.answers[-1]}"
    assert readiness.most_spooled() > 0, "nothing was spooled while Redis was down"
    check_delivered(rig.sitecore, shoppers)
    assert ready_again, "/readyz did not recover"
    assert counted, f"{decided} decided answers, {exposed} exposures in the experiment report"
    assert unlearned == 0, f"{unlearned} acknowledged cart products never reached the profiles"
    print(
        json.dumps(
            {
                "outage": outage,
                "acknowledged": len(acked),
                "acknowledged_while_down": during,
                "slowest_call_s": round(max(s.slowest for s in shoppers), 2),
                "most_spooled": readiness.most_spooled(),
                "decided": decided,
                "exposures_counted": exposed,
                "delivered_after_redis_back_s": round(drained, 2),
                "counters": counters,
            }
        )
    )
