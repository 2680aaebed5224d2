"""The outbox contract, on every backend: once per destination, per-key order, holds, retries,
dead letters, take-over of a killed process's leases, and (Redis) the spool while Redis is down."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from state import State, StateConfig, open_state
from state.events import PRODUCT_VIEWED, Event
from state.exposures import Exposure
from state.outbox import Delivery, Leased, Outbox
from state.redis.spool import Spool
from state.sqlite import SCHEMA
from state.sqlite import outbox as sqlite_outbox
from tests.redisserver import drop, own_redis, unique_prefix

pytestmark = pytest.mark.anyio


def event(key: str, n: int) -> Event:
    return Event(type=PRODUCT_VIEWED, visitor=key, occurred_at=1000.0 + n, data={"n": n})


async def lease(
    box: Outbox,
    dest: str,
    now: float,
    *,
    busy: tuple[str, ...] = (),
    per_key: int = 50,
    limit: int = 500,
    max_keys: int | None = None,
) -> Leased:
    return await box.lease(dest, now, limit=limit, per_key=per_key, max_keys=max_keys, busy=busy)


def numbers(leased: Leased) -> dict[str, list[int]]:
    return {key: [d.event.data["n"] for d in group] for key, group in leased.groups.items()}


def flat(leased: Leased) -> list[Delivery]:
    return [d for group in leased.groups.values() for d in group]


@asynccontextmanager
async def opened(config: StateConfig) -> AsyncIterator[State]:
    state = await open_state(config)
    try:
        yield state
    finally:
        await state.close()


async def test_each_event_goes_once_to_each_of_its_destinations(state_config: StateConfig) -> None:
    async with opened(state_config) as state:
        box = state.outbox
        events = [event(f"v{i % 4}", i) for i in range(20)]
        await box.append(events, [["cdp", "file"]] * 20, now=1.0, hold_until=0.0)
        leased = await lease(box, "cdp", 2.0)
        assert numbers(leased) == {f"v{k}": list(range(k, 20, 4)) for k in range(4)}
        await box.ack("cdp", flat(leased))
        assert (await lease(box, "cdp", 3.0)).groups == {}
        assert {e.id for e in map(lambda d: d.event, flat(await lease(box, "file", 3.0)))} == {
            e.id for e in events
        }
        stats = await box.stats()
        assert stats["cdp"] == {"pending": 0, "delivered": 20, "dead": 0}
        assert stats["file"]["pending"] == 20


async def test_a_backing_off_delivery_holds_back_its_key_only(state_config: StateConfig) -> None:
    async with opened(state_config) as state:
        box = state.outbox
        for i, key in enumerate(["a", "b", "a", "c", "b"]):
            await box.append([event(key, i)], [["cdp"]], now=1.0, hold_until=0.0)
        first = await lease(box, "cdp", 10.0, per_key=1)
        assert numbers(first) == {"a": [0], "b": [1], "c": [3]}
        by_key = {key: group[0] for key, group in first.groups.items()}
        await box.retry("cdp", by_key["a"], next_at=50.0, error="HTTP 500", dead=False)
        await box.ack("cdp", [by_key["b"], by_key["c"]])
        second = await lease(box, "cdp", 20.0)
        assert numbers(second) == {"b": [4]}  # a's later event waits behind the failed one
        assert second.next_due == 50.0
        await box.ack("cdp", flat(second))
        third = await lease(box, "cdp", 60.0, busy=())
        assert numbers(third) == {"a": [0, 2]}
        assert [d.attempts for d in third.groups["a"]] == [1, 0]
        assert (await lease(box, "cdp", 60.0, busy=("a",))).groups == {}


async def test_busy_keys_and_max_keys_are_respected(state_config: StateConfig) -> None:
    async with opened(state_config) as state:
        box = state.outbox
        events = [event(key, i) for i, key in enumerate("abcab")]
        await box.append(events, [["cdp"]] * 5, now=1.0, hold_until=0.0)
        picked = await lease(box, "cdp", 2.0, busy=("a",), max_keys=1)
        assert numbers(picked) == {"b": [1, 4]}


async def test_a_held_event_waits_for_its_release_and_goes_hydrated(
    state_config: StateConfig,
) -> None:
    async with opened(state_config) as state:
        box = state.outbox
        held = event("a", 0)
        await box.append([held], [["cdp"]], now=1000.0, hold_until=1030.0)
        await box.append([event("a", 1), event("b", 2)], [["cdp"], ["cdp"]], 1001.0, 0.0)
        waiting = await lease(box, "cdp", 1002.0)
        assert numbers(waiting) == {"b": [2]}  # a's second event waits behind the held one
        assert waiting.next_due == 1030.0
        await box.ack("cdp", flat(waiting))
        hydrated = replace(held, data={"n": 0, "product": {"ID": "p1"}})
        await box.release([hydrated])
        released = await lease(box, "cdp", 1003.0)
        assert numbers(released) == {"a": [0, 1]}
        assert released.groups["a"][0].event.data["product"] == {"ID": "p1"}
        assert released.groups["a"][0].event.id == held.id


async def test_an_unreleased_event_goes_as_recorded_after_its_hold(
    state_config: StateConfig,
) -> None:
    async with opened(state_config) as state:
        box = state.outbox
        await box.append([event("a", 0)], [["cdp"]], now=1000.0, hold_until=1030.0)
        assert (await lease(box, "cdp", 1029.0)).groups == {}
        late = await lease(box, "cdp", 1031.0)
        assert numbers(late) == {"a": [0]} and late.groups["a"][0].event.data == {"n": 0}


async def test_retries_count_attempts_then_dead_letter_and_replay(
    state_config: StateConfig,
) -> None:
    async with opened(state_config) as state:
        box = state.outbox
        original = event("a", 0)
        await box.append([original], [["webhook", "file"]], now=1.0, hold_until=0.0)
        now = 2.0
        for attempts in range(3):
            [delivery] = flat(await lease(box, "webhook", now))
            assert delivery.attempts == attempts
            await box.retry("webhook", delivery, now + 1, "HTTP 503", dead=attempts == 2)
            now += 2
        assert (await lease(box, "webhook", now + 100)).groups == {}
        stats = await box.stats()
        assert stats["webhook"] == {"pending": 0, "delivered": 0, "dead": 1}
        assert stats["file"]["pending"] == 1
        assert await box.replay_dead("webhook") == 1
        assert (await box.stats())["webhook"]["dead"] == 0
        [again] = flat(await lease(box, "webhook", now + 200))
        assert (again.event.id, again.attempts) == (original.id, 0)
        await box.ack("webhook", [again])
        assert await box.replay_dead() == 0
        assert (await box.stats())["webhook"] == {"pending": 0, "delivered": 1, "dead": 0}


async def test_oldest_is_the_queue_time_of_the_oldest_undelivered_event(
    state_config: StateConfig,
) -> None:
    """Both backends: queued times (Redis: when entries reached it) within a few seconds; an
    event leased and retried is still undelivered; delivered and dead ones are not."""
    async with opened(state_config) as state:
        box = state.outbox
        assert await box.oldest() == {}
        first = time.time()
        await box.append([event("a", 0)], [["webhook", "file"]], now=first, hold_until=0.0)
        await asyncio.sleep(0.05)
        await box.append([event("b", 1)], [["webhook"]], now=time.time(), hold_until=0.0)
        oldest = await box.oldest()
        assert set(oldest) == {"webhook", "file"}
        assert abs(oldest["webhook"] - first) < 2 and abs(oldest["file"] - first) < 2
        leased = await lease(box, "webhook", time.time())
        [a] = leased.groups["a"]
        await box.retry("webhook", a, time.time() + 60, "HTTP 503", dead=False)
        assert abs((await box.oldest())["webhook"] - first) < 2
        await box.ack("webhook", leased.groups["b"])
        await box.retry("webhook", a, time.time(), "HTTP 400", dead=True)
        await box.ack("file", flat(await lease(box, "file", time.time())))
        assert await box.oldest() == {}


async def test_recent_pages_oldest_first_with_cursors(state_config: StateConfig) -> None:
    async with opened(state_config) as state:
        box = state.outbox
        events = [event("a", i) for i in range(6)]
        for e in events:
            await box.append([e], [["file"]], now=1.0, hold_until=0.0)
        last = await box.recent(3)
        assert [e.id for _, e in last] == [e.id for e in events[3:]]
        first = await box.recent(2, after=None)
        assert [e.id for _, e in first] == [e.id for e in events[4:]]
        oldest_cursor = (await box.recent(6))[0][0]
        after = await box.recent(10, after=oldest_cursor)
        assert [e.id for _, e in after] == [e.id for e in events[1:]]


CHILD = """
import asyncio, json, sys, time
from pathlib import Path
from state import StateConfig, open_state
from state.events import Event

async def main(spec):
    config = StateConfig(spec["location"], prefix=spec["prefix"], spool=Path(spec["spool"]),
                         lease_seconds=spec["lease"], partitions=spec["partitions"],
                         replica="doomed")
    state = await open_state(config)
    events = [Event(type="products.viewed", visitor=f"v{i % 3}", occurred_at=i, data={"n": i})
              for i in range(9)]
    await state.outbox.append(events, [["cdp"]] * 9, now=time.time(), hold_until=0.0)
    leased = await state.outbox.lease("cdp", time.time(), limit=100, per_key=100,
                                      max_keys=None, busy=())
    print(sum(len(g) for g in leased.groups.values()), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main(json.loads(sys.argv[1])))
"""


async def test_the_leases_of_a_killed_process_are_taken_over(
    state_config: StateConfig, tmp_path: Path
) -> None:
    spec = {
        "location": state_config.location,
        "prefix": state_config.prefix,
        "spool": str(tmp_path / "child-spool.db"),
        "lease": state_config.lease_seconds,
        "partitions": state_config.partitions,
    }
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(spec)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        line = await asyncio.to_thread(child.stdout.readline)
        assert line.strip() == "9", "the doomed process leased all nine"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    killed = time.monotonic()
    async with opened(replace(state_config, replica="survivor")) as state:
        got: dict[str, list[int]] = {}
        while sum(map(len, got.values())) < 9:
            assert time.monotonic() - killed < 3 * state_config.lease_seconds + 2, got
            leased = await lease(state.outbox, "cdp", time.time())
            for key, numbers_ in numbers(leased).items():
                got.setdefault(key, []).extend(numbers_)
            await state.outbox.ack("cdp", flat(leased))
            await asyncio.sleep(0.05)
        assert got == {f"v{k}": list(range(k, 9, 3)) for k in range(3)}


async def test_two_live_instances_never_hand_out_the_same_delivery(
    state_config: StateConfig,
) -> None:
    async with (
        opened(replace(state_config, replica="one")) as one,
        opened(replace(state_config, replica="two")) as two,
    ):
        events = [event(f"v{i % 12}", i) for i in range(240)]
        await one.outbox.append(events, [["cdp"]] * 240, now=time.time(), hold_until=0.0)
        delivered: list[Event] = []
        by: dict[int, int] = {id(one.outbox): 0, id(two.outbox): 0}
        in_flight: dict[str, tuple[Outbox, Delivery]] = {}
        deadline = time.monotonic() + 20
        while len(delivered) < 240:
            assert time.monotonic() < deadline, len(delivered)
            for box in (one.outbox, two.outbox):
                settled = [(b, d) for b, d in in_flight.values() if b is box]
                busy = tuple(d.event.order_key for _, d in settled)  # as a dispatcher passes
                leased = await lease(box, "cdp", time.time(), per_key=1, busy=busy)
                for d in flat(leased):
                    assert d.event.id not in in_flight, "handed out twice at once"
                    in_flight[d.event.id] = (box, d)
                    by[id(box)] += 1
                await box.ack("cdp", [d for _, d in settled])
                for _, d in settled:
                    delivered.append(in_flight.pop(d.event.id)[1].event)
            await asyncio.sleep(0.05)
        assert sorted(e.id for e in delivered) == sorted(e.id for e in events)
        assert all(by.values()), "both instances took a share of the work"
        for k in range(12):
            mine = [e.data["n"] for e in delivered if e.visitor == f"v{k}"]
            assert mine == sorted(mine), f"v{k} out of order"


@pytest.fixture
async def redis_box(redis_url: str, redis_prefix: str, tmp_path: Path) -> AsyncIterator[Any]:
    """The Redis outbox under the test's own prefix, two partitions (its client is reachable)."""
    config = StateConfig(redis_url, prefix=redis_prefix, spool=tmp_path / "s.db", partitions=2)
    async with opened(config) as state:
        yield state.outbox


async def test_streams_are_trimmed_to_what_some_destination_still_needs(
    redis_box: Any, redis_prefix: str
) -> None:
    box = redis_box
    await box.append([event(f"v{i}", i) for i in range(40)], [["cdp"]] * 40, 1.0, 0.0)
    await box.append([event("w", 40)], [["cdp", "file"]], 1.0, 0.0)
    assert numbers(await lease(box, "file", 2.0)) == {"w": [40]}  # read, not acked
    await box.ack("cdp", flat(await lease(box, "cdp", 2.0)))
    await box.trim()
    lengths = [await box.client.xlen(f"{redis_prefix}out:{p}") for p in range(2)]
    assert sum(lengths) <= 3, lengths  # what the file group has not acked stays


async def test_a_delivery_retried_then_acked_leaves_no_retry_state(
    redis_box: Any, redis_prefix: str
) -> None:
    box = redis_box
    await box.append([event(f"v{i}", i) for i in range(6)], [["cdp"]] * 6, 1.0, 0.0)
    for delivery in flat(await lease(box, "cdp", 2.0)):
        await box.retry("cdp", delivery, 3.0, "HTTP 503", dead=False)
    retries = f"{redis_prefix}retry:cdp"
    assert await box.client.hlen(retries) == 6
    again = flat(await lease(box, "cdp", 4.0))
    assert sorted(d.attempts for d in again) == [1] * 6
    await box.ack("cdp", again)  # spread over both partitions: one script call each
    assert await box.client.hlen(retries) == 0
    assert (await box.stats())["cdp"] == {"pending": 0, "delivered": 6, "dead": 0}


# -- SQLite only ---------------------------------------------------------------------------------


async def test_a_claim_keeps_a_key_in_order_when_another_process_took_a_row_of_it() -> None:
    """The scan and the claim are separate transactions: a row another process leased in
    between ends this key's claim, and the rows after it are handed back, not delivered."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.executescript(SCHEMA)
    events = [event("v1", n) for n in range(3)] + [event("v2", 3)]
    sqlite_outbox.append(conn, events, [["cdp"]] * 4, now=1.0, hold_until=0.0)
    seqs = [seq for (seq,) in conn.execute("SELECT seq FROM events ORDER BY seq")]
    picked = {
        "v1": [Delivery(str(seq), e, 0, 1.0) for seq, e in zip(seqs[:3], events[:3])],
        "v2": [Delivery(str(seqs[3]), events[3], 0, 1.0)],
    }
    taken = {"v1": [picked["v1"][1]]}  # the other process leased v1's second row meanwhile
    assert sqlite_outbox.claim(conn, "cdp", taken, now=2.0, owner="other", lease_for=30) == taken
    claimed = sqlite_outbox.claim(conn, "cdp", picked, now=2.0, owner="me", lease_for=30)
    assert claimed == {"v1": picked["v1"][:1], "v2": picked["v2"]}
    owners = dict(conn.execute("SELECT seq, owner FROM deliveries"))
    assert [owners[seq] for seq in seqs] == ["me", "other", None, "me"]
    sqlite_outbox.ack(conn, "cdp", [d.ref for group in claimed.values() for d in group])
    states = dict(conn.execute("SELECT seq, state FROM deliveries"))
    assert [states[seq] for seq in seqs] == [1, 0, 0, 1]


# -- Redis only: the spool while Redis is away --------------------------------------------------


async def test_events_spool_while_redis_is_down_and_move_back_in_order(tmp_path: Path) -> None:
    with own_redis(tmp_path / "redis") as server:
        config = StateConfig(
            server.url,
            prefix=unique_prefix(),
            spool=tmp_path / "spool.db",
            lease_seconds=1.0,
            partitions=4,
        )
        async with opened(config) as state:
            box = state.outbox
            before = [event(f"v{i % 3}", i) for i in range(6)]
            await box.append(before, [["cdp"]] * 6, now=1.0, hold_until=0.0)
            assert box.spooled() == 0  # Redis answered: straight in, nothing spooled
            server.kill()
            started = time.monotonic()
            during = [event(f"v{i % 3}", i) for i in range(6, 36)]
            held = during[-1]
            for e in during[:-1]:
                await box.append([e], [["cdp"]], now=2.0, hold_until=0.0)
            await box.append([held], [["cdp"]], now=2.0, hold_until=500.0)
            await box.release([replace(held, data={"n": held.data["n"], "hydrated": True})])
            assert time.monotonic() - started < 6, "an outage is noticed in seconds"
            assert box.spooled() == 30
            assert (await state.health())["outbox"].startswith("degraded")
            server.start()
            deadline = time.monotonic() + 10
            while box.spooled():
                assert time.monotonic() < deadline, "the spool did not drain"
                await asyncio.sleep(0.05)
            assert (await state.health())["outbox"] == "ok"
            leased = await lease(box, "cdp", 3.0)
            assert numbers(leased) == {f"v{k}": list(range(k, 36, 3)) for k in range(3)}
            last = leased.groups[held.visitor or ""][-1].event
            assert (last.id, last.data.get("hydrated")) == (held.id, True)
        drop(server.url, config.prefix)


async def test_exposures_spool_while_redis_is_down_and_the_next_process_moves_them(
    tmp_path: Path,
) -> None:
    now = time.time()
    seen = [Exposure("anon-o1", "home", "r1", "B", 3, "me/products", now - n) for n in (3, 2, 1)]
    with own_redis(tmp_path / "redis") as server:
        config = StateConfig(server.url, prefix=unique_prefix(), spool=tmp_path / "spool.db")
        async with opened(config) as state:
            await state.exposures.add(seen[:1])
            server.kill()
            await state.exposures.add(seen[1:])  # no error: they wait on this machine's disk
            assert (await state.health())["exposures"] == "degraded: 2 exposures spooled"
        server.start()  # this process ended during the outage; the next one takes its spool
        async with opened(config) as state:
            deadline = time.monotonic() + 10
            while (await state.health())["exposures"] != "ok":
                assert time.monotonic() < deadline, "the spooled exposures never moved"
                await asyncio.sleep(0.05)
            [row] = await state.exposures.report()
            assert (row["exposures"], row["visitors"]) == (3, 1)
            assert await state.exposures.matched_since(now - 3600) == {("home", "r1"): 3}
        drop(server.url, config.prefix)


def test_each_process_takes_its_own_spool_file_and_a_freed_one_is_taken_over(
    tmp_path: Path,
) -> None:
    base = tmp_path / "spool.db"
    first, second = Spool(base), Spool(base)  # two workers configured with the same path
    assert first.path != second.path
    taken = first.path
    asyncio.run(first.close())  # the process ended: its file (and what it holds) is free
    third = Spool(base)
    assert third.path == taken
    for spool in (second, third):
        asyncio.run(spool.close())
