"""The dispatcher against fake HTTP destinations: retries, 429, timeouts, outages, order, DLQ."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from state import StateConfig, open_state
from state.events import Event
from state.outbox import Outbox
from tests.fakes_destinations import Sink, client_for
from tracking.breaker import Breaker
from tracking.destinations.file import FileDestination
from tracking.destinations.webhook import WebhookDestination
from tracking.dispatcher import Dispatcher, Policy

pytestmark = pytest.mark.anyio


@pytest.fixture
async def box(state_config: StateConfig):  # type: ignore[no-untyped-def]
    """The outbox on each backend: the dispatcher's behaviour may not depend on which."""
    state = await open_state(state_config)
    yield state.outbox
    await state.close()


def fast(**kw: object) -> Policy:
    values: dict[str, object] = {
        "base_delay": 0.001,
        "max_delay": 0.01,
        "poll": 0.02,
        "breaker": Breaker(threshold=50, cooldown=0.01),
    }
    values.update(kw)
    return Policy(**values)  # type: ignore[arg-type]


async def until(check: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


async def put(box: Outbox, dest: str, visitors: list[str]) -> list[Event]:
    events = [
        Event(type="orders.lines.added", visitor=v, occurred_at=1000.0 + i, data={"i": i})
        for i, v in enumerate(visitors)
    ]
    await box.append(events, [[dest]] * len(events), time.time(), 0)
    return events


async def run(box: Outbox, sink: Sink, policy: Policy) -> tuple[Dispatcher, httpx.AsyncClient]:
    client = client_for({"hook.test": sink})
    dispatcher = Dispatcher(box, WebhookDestination(client, "http://hook.test/in", "sec"), policy)
    dispatcher.start()
    return dispatcher, client


async def stats(box: Outbox, dest: str = "webhook") -> dict[str, int]:
    return (await box.stats()).get(dest, {"pending": 0, "delivered": 0, "dead": 0})


async def settle(box: Outbox, want: dict[str, int], dest: str = "webhook") -> None:
    deadline = time.monotonic() + 5
    while await stats(box, dest) != {"pending": 0, "delivered": 0, "dead": 0, **want}:
        assert time.monotonic() < deadline, await stats(box, dest)
        await asyncio.sleep(0.01)


async def test_500_then_recovery_redelivers_the_same_id(box: Outbox) -> None:
    [sent] = await put(box, "webhook", ["v1"])
    sink = Sink([500, 503, 200])
    dispatcher, client = await run(box, sink, fast())
    await settle(box, {"delivered": 1})
    assert sink.attempts == 3
    assert sink.requests[0].headers["x-ocgw-event-id"] == sent.id
    await dispatcher.stop(1)
    await client.aclose()


async def test_429_retry_after_is_honoured(box: Outbox) -> None:
    await put(box, "webhook", ["v1"])
    seen: list[float] = []

    def stamp(status: int, headers: dict[str, str]) -> Callable[[httpx.Request], httpx.Response]:
        def respond(_: httpx.Request) -> httpx.Response:
            seen.append(time.monotonic())
            return httpx.Response(status, headers=headers)

        return respond

    sink = Sink([stamp(429, {"retry-after": "0.2"}), stamp(200, {})])
    dispatcher, client = await run(box, sink, fast())
    await settle(box, {"delivered": 1})
    assert seen[1] - seen[0] >= 0.2
    await dispatcher.stop(1)
    await client.aclose()


async def test_timeouts_and_connection_errors_are_retried(box: Outbox) -> None:
    await put(box, "webhook", ["v1", "v2"])
    sink = Sink([httpx.ReadTimeout("slow"), httpx.ConnectError("down"), 200])
    dispatcher, client = await run(box, sink, fast())
    await settle(box, {"delivered": 2})
    assert dispatcher.failed == 2
    await dispatcher.stop(1)
    await client.aclose()


async def test_down_then_up_opens_the_breaker_then_recovers(box: Outbox) -> None:
    await put(box, "webhook", [f"v{i}" for i in range(10)])
    down = [httpx.ConnectError("refused")] * 6
    sink = Sink([*down, 200])
    breaker = Breaker(threshold=3, cooldown=0.02, max_cooldown=0.05)
    dispatcher, client = await run(box, sink, fast(breaker=breaker))
    await settle(box, {"delivered": 10})
    assert breaker.state == "closed"
    await dispatcher.stop(1)
    await client.aclose()


async def test_open_breaker_stops_attempts_during_cooldown(box: Outbox) -> None:
    await put(box, "webhook", [f"v{i}" for i in range(20)])
    sink = Sink([500])
    breaker = Breaker(threshold=3, cooldown=60)
    dispatcher, client = await run(box, sink, fast(breaker=breaker))
    await until(lambda: breaker.state == "open")
    await asyncio.sleep(0.1)
    assert sink.attempts <= 3 + dispatcher.policy.concurrency  # only what was already in flight
    attempts = sink.attempts
    await asyncio.sleep(0.1)
    assert sink.attempts == attempts
    await dispatcher.stop(1)
    await client.aclose()


async def test_order_is_kept_per_visitor_through_failures(box: Outbox) -> None:
    visitors = [f"v{i % 4}" for i in range(40)]
    events = await put(box, "webhook", visitors)
    calls = {"n": 0}

    def flaky(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        return httpx.Response(500 if calls["n"] % 3 == 0 else 200)

    sink = Sink([flaky])
    dispatcher, client = await run(box, sink, fast())
    await settle(box, {"delivered": 40})
    delivered = [json.loads(b) for b in sink.bodies]
    for visitor in set(visitors):
        expected = [e.id for e in events if e.visitor == visitor]
        got = [d["id"] for d in delivered if d["visitor"] == visitor]
        assert got == expected
    await dispatcher.stop(1)
    await client.aclose()


async def test_4xx_dead_letters_at_once_and_replay_reuses_the_id(
    box: Outbox, tmp_path: Path
) -> None:
    [bad, good] = await put(box, "webhook", ["v1", "v1"])
    sink = Sink([400, 200])
    dispatcher, client = await run(box, sink, fast())
    await settle(box, {"delivered": 1, "dead": 1})
    assert sink.attempts == 2  # the dead one did not block the visitor's next event
    assert await box.replay_dead() == 1
    dispatcher.wake()
    await settle(box, {"delivered": 2})
    assert [json.loads(b)["id"] for b in sink.bodies] == [good.id, bad.id]
    await dispatcher.stop(1)
    await client.aclose()


async def test_dead_after_max_attempts(box: Outbox) -> None:
    await put(box, "webhook", ["v1"])
    sink = Sink([500])
    dispatcher, client = await run(box, sink, fast(max_attempts=3))
    await settle(box, {"dead": 1})
    assert sink.attempts == 3
    await dispatcher.stop(1)
    await client.aclose()


async def test_dead_after_max_age(box: Outbox) -> None:
    await put(box, "webhook", ["v1"])
    sink = Sink([500])
    dispatcher, client = await run(box, sink, fast(max_age=0.0))
    await settle(box, {"dead": 1})
    assert sink.attempts == 1
    await dispatcher.stop(1)
    await client.aclose()


async def test_a_dead_webhook_does_not_stall_the_file(box: Outbox, tmp_path: Path) -> None:
    events = [Event(type="products.viewed", visitor=f"v{i}", occurred_at=1.0) for i in range(30)]
    await box.append(events, [["webhook", "file"]] * len(events), time.time(), 0)
    sink = Sink([httpx.ConnectError("refused")])
    hook, client = await run(box, sink, fast())
    file = Dispatcher(box, FileDestination(tmp_path / "ev.jsonl"), fast())
    file.start()
    await settle(box, {"delivered": 30}, dest="file")
    lines = (tmp_path / "ev.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["id"] for x in lines) == sorted(e.id for e in events)
    assert (await stats(box))["delivered"] == 0
    await asyncio.gather(hook.stop(1), file.stop(1))
    await client.aclose()


async def test_stop_drains_in_flight_deliveries(box: Outbox) -> None:
    await put(box, "webhook", ["v1"])
    started = asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        started.set()
        await asyncio.sleep(0.1)
        return httpx.Response(200)

    transport = httpx.MockTransport(slow)
    client = httpx.AsyncClient(transport=transport)
    dispatcher = Dispatcher(box, WebhookDestination(client, "http://hook.test/", None), fast())
    dispatcher.start()
    await started.wait()
    await dispatcher.stop(2)
    assert (await stats(box))["delivered"] == 1
    await client.aclose()


async def test_a_batch_destination_takes_one_busy_visitors_events_in_one_batch(
    box: Outbox,
) -> None:
    batches: list[list[str]] = []

    class Batches:
        name = "batches"
        accepts = frozenset({"orders.lines.added"})
        max_batch = 100

        async def send(self, events: list[Event]) -> None:
            batches.append([e.id for e in events])

    events = await put(box, "batches", ["v1"] * 60)
    dispatcher = Dispatcher(box, Batches(), fast())
    dispatcher.start()
    await settle(box, {"delivered": 60}, dest="batches")
    await dispatcher.stop(1)
    assert batches == [[e.id for e in events]]  # one request, in record order
