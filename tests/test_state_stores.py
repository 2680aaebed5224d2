"""The contract of the profile, browser id, cart, table version and exposure stores, run on both
backends: whatever one backend does here, the other must do too. Two independently opened
instances stand for two replicas (or two processes on one SQLite file)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
from redis.exceptions import RedisError

from state import State, StateConfig, open_state
from state.exposures import Exposure
from state.profiles import Profile
from state.versions import Version
from tests.redisserver import RedisProcess
from tests.servers import free_port

pytestmark = pytest.mark.anyio

T = TypeVar("T")
Opener = Callable[[], Awaitable[State]]


async def eventually(read: Callable[[], Awaitable[T]], check: Callable[[T], bool]) -> T:
    """Poll `read` until `check` holds; fails after 1.5 s (the stores promise about 1 s)."""
    deadline = time.monotonic() + 1.5
    while True:
        value = await read()
        if check(value) or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.05)


# Profiles


def _count_order(profile: Profile | None) -> Profile:
    profile = profile or Profile("joe")
    profile.orders += 1
    return profile


async def test_profile_update_and_get_round_trip(replica: Opener) -> None:
    state = await replica()
    assert await state.profiles.get("joe") is None
    stored = await state.profiles.update("joe", lambda _: Profile("joe", buyer_id="b1", spent=5.5))
    assert stored == Profile("joe", buyer_id="b1", spent=5.5)
    assert await state.profiles.get("joe") == stored
    # None from the change leaves the profile as it was, and answers it
    assert await state.profiles.update("joe", lambda _: None) == stored
    assert await state.profiles.update("nobody", lambda _: None) is None
    # callers get their own copy to change
    got = await state.profiles.get("joe")
    assert got is not None
    got.viewed_products.append("p1")
    assert (await state.profiles.get("joe")) == stored


async def test_concurrent_updates_from_two_instances_lose_nothing(replica: Opener) -> None:
    a, b = await replica(), await replica()
    await asyncio.gather(
        *((a if i % 2 else b).profiles.update("joe", _count_order) for i in range(50))
    )
    fresh = await replica()
    profile = await fresh.profiles.get("joe")
    assert profile is not None and profile.orders == 50


async def test_a_change_through_one_instance_is_read_by_another_within_a_second(
    replica: Opener,
) -> None:
    a, b = await replica(), await replica()
    assert await a.profiles.get("joe") is None  # a remembers the miss
    await b.profiles.update("joe", _count_order)
    seen = await eventually(lambda: a.profiles.get("joe"), lambda p: p is not None)
    assert seen is not None and seen.orders == 1
    await b.profiles.update("joe", _count_order)  # a has orders=1 cached
    seen = await eventually(
        lambda: a.profiles.get("joe"), lambda p: p is not None and p.orders == 2
    )
    assert seen is not None and seen.orders == 2


# Browser ids


async def test_browser_ids_put_new_keeps_the_first_and_put_replaces(replica: Opener) -> None:
    a, b = await replica(), await replica()
    assert await a.browser_ids.get("joe") is None
    assert await a.browser_ids.put_new("joe", "minted-1") == "minted-1"
    assert await b.browser_ids.put_new("joe", "minted-2") == "minted-1"
    assert await b.browser_ids.get("joe") == "minted-1"
    await b.browser_ids.put("joe", "from-cookie")
    assert await b.browser_ids.get("joe") == "from-cookie"
    assert await a.browser_ids.put_new("joe", "minted-3") == "from-cookie"
    assert await eventually(lambda: a.browser_ids.get("joe"), lambda v: v == "from-cookie") == (
        "from-cookie"
    )


# Carts


def _line(line_id: str, product: str, quantity: int, total: float) -> dict[str, Any]:
    """A cart line as the tracker hands it over (already cut to what a cart keeps)."""
    return {
        "ID": line_id,
        "ProductID": product,
        "Quantity": quantity,
        "UnitPrice": total / quantity,
        "LineTotal": total,
        "Product": {"ID": product, "Name": product.upper()},
    }


_kept = _line


async def _change(state: State, visitor: str, line: dict[str, Any], **kwargs: Any) -> Any:
    options: dict[str, Any] = {
        "removed": False,
        "order_id": None,
        "anonymous": True,
        "browser_id": None,
        "now": 100.0,
    }
    return await state.carts.change(visitor, line, **(options | kwargs))


async def test_cart_changes_answer_the_line_as_it_was(replica: Opener) -> None:
    carts = await replica()
    assert await _change(carts, "anon-1", _line("l1", "p1", 1, 10.0), order_id="o1") is None
    before = await _change(carts, "anon-1", _line("l1", "p1", 2, 20.0))
    assert before == _kept("l1", "p1", 1, 10.0)
    assert await _change(carts, "anon-1", _line("l2", "p2", 1, 5.0), browser_id="br-1") is None
    removed = await _change(carts, "anon-1", {"ID": "l2"}, removed=True, now=150.0)
    assert removed == _kept("l2", "p2", 1, 5.0)
    assert await _change(carts, "anon-1", {"ID": "l9"}, removed=True, now=160.0) is None

    [cart] = await carts.carts.idle(idle_since=200.0)
    # unknown order and browser ids keep the ones known; every change bumps the version
    assert (cart.visitor, cart.order_id, cart.browser_id) == ("anon-1", "o1", "br-1")
    assert (cart.version, cart.anonymous, cart.updated_at) == (5, True, 160.0)
    assert cart.lines == [_kept("l1", "p1", 2, 20.0)]
    assert await carts.carts.idle(idle_since=160.0) == []  # touched at 160: not idle before it


async def test_idle_carts_are_reported_once_per_version(replica: Opener) -> None:
    a, b = await replica(), await replica()
    await _change(a, "anon-1", _line("l1", "p1", 1, 10.0), now=100.0)
    await _change(a, "anon-2", _line("l1", "p1", 1, 10.0), now=110.0)
    await _change(a, "anon-3", _line("l1", "p1", 1, 10.0), now=120.0)
    assert len(await b.carts.idle(idle_since=200.0, limit=2)) == 2
    assert {c.visitor for c in await b.carts.idle(idle_since=200.0)} == {
        "anon-1",
        "anon-2",
        "anon-3",
    }

    assert await b.carts.reported("anon-1", 1)  # claimed by this caller...
    assert not await a.carts.reported("anon-1", 1)  # ...and by no other
    assert not await b.carts.reported("anon-2", 7)  # not its version: stays unreported
    assert {c.visitor for c in await a.carts.idle(idle_since=200.0)} == {"anon-2", "anon-3"}

    await _change(a, "anon-1", _line("l2", "p2", 1, 5.0), now=130.0)  # a new, unreported version
    [again] = [c for c in await b.carts.idle(idle_since=200.0) if c.visitor == "anon-1"]
    assert again.version == 2 and len(again.lines) == 2

    await _change(a, "anon-3", {"ID": "l1"}, removed=True, now=140.0)  # emptied: nothing to report
    await a.carts.close("anon-2")
    assert [c.visitor for c in await b.carts.idle(idle_since=200.0)] == ["anon-1"]
    # a closed cart starts afresh
    await _change(a, "anon-2", _line("l1", "p1", 1, 10.0), now=150.0)
    assert [c.version for c in await b.carts.idle(idle_since=200.0) if c.visitor == "anon-2"] == [1]


async def test_moving_a_cart_replaces_the_registered_one(replica: Opener) -> None:
    carts = await replica()
    await _change(carts, "anon-1", _line("l1", "p1", 1, 10.0), browser_id="br-1", now=100.0)
    await _change(carts, "joe", _line("l7", "p7", 1, 70.0), anonymous=False, now=110.0)
    await carts.carts.move("anon-1", "joe")
    [cart] = await carts.carts.idle(idle_since=200.0)
    assert (cart.visitor, cart.anonymous, cart.browser_id, cart.version) == (
        "joe",
        False,
        "br-1",
        1,
    )
    assert cart.lines == [_kept("l1", "p1", 1, 10.0)]
    await carts.carts.move("anon-9", "joe")  # nothing to move: joe's cart stays
    assert [c.visitor for c in await carts.carts.idle(idle_since=200.0)] == ["joe"]


# Table versions


async def test_versions_are_numbered_in_order_with_diffs(replica: Opener) -> None:
    state = await replica()
    assert await state.versions.latest_number() is None
    assert await state.versions.list() == []
    first = await state.versions.add("a: 1\n", "alice", "first")
    assert first is not None and first.version == 1
    assert first.diff.startswith("--- empty\n+++ v1\n")
    second = await state.versions.add("a: 2\n", "bob")
    assert second is not None and second.version == 2
    assert "-a: 1\n+a: 2\n" in second.diff and second.diff.startswith("--- v1\n+++ v2\n")

    got = await state.versions.get(1)
    assert got is not None
    assert (got.source, got.author, got.comment) == ("a: 1\n", "alice", "first")
    assert got.created_at == pytest.approx(first.created_at)
    assert await state.versions.get(3) is None
    assert await state.versions.latest_number() == 2
    listed = await state.versions.list()
    assert [(v.version, v.author, v.source) for v in listed] == [(2, "bob", ""), (1, "alice", "")]


async def test_unless_repeated_compares_with_the_authors_newest_version(replica: Opener) -> None:
    state = await replica()
    assert await state.versions.add("a: 1\n", "file", unless_repeated=True) is not None
    assert await state.versions.add("a: 1\n", "file", unless_repeated=True) is None
    assert await state.versions.add("a: 1\n", "alice", unless_repeated=True) is not None
    assert await state.versions.add("a: 1\n", "file") is not None  # only when asked
    assert await state.versions.add("a: 2\n", "file", unless_repeated=True) is not None
    assert await state.versions.latest_number() == 4


async def test_imported_versions_keep_number_time_author_and_diff(replica: Opener) -> None:
    a, b = await replica(), await replica()
    old = Version(1, 1_700_000_000.5, "alice", "first", "a: 1\n", "--- empty\n+++ v1\n+a: 1\n")
    newer = Version(2, 1_700_000_100.25, "bob", "", "a: 2\n", "--- v1\n+++ v2\n")
    assert await a.versions.import_version(old)
    assert await a.versions.import_version(newer)
    assert not await b.versions.import_version(replace(old, source="other\n"))  # number taken

    assert await b.versions.get(1) == old and await b.versions.get(2) == newer
    assert await b.versions.latest_number() == 2
    assert [v.summary() for v in await b.versions.list()] == [newer.summary(), old.summary()]
    assert await b.versions.add("a: 2\n", "bob", unless_repeated=True) is None
    third = await b.versions.add("a: 3\n", "carol")
    assert third is not None and third.version == 3 and third.diff.startswith("--- v2\n")


async def test_concurrent_adds_from_two_instances_get_consecutive_numbers(
    replica: Opener,
) -> None:
    a, b = await replica(), await replica()
    added = await asyncio.gather(
        *((a if i % 2 else b).versions.add(f"n: {i}\n", f"author-{i}") for i in range(20))
    )
    assert sorted(v.version for v in added if v is not None) == list(range(1, 21))
    assert await a.versions.latest_number() == 20
    for version in added:
        assert version is not None
        stored = await b.versions.get(version.version)
        assert stored is not None and stored.source == version.source


async def test_a_version_added_through_one_instance_is_announced_on_another(
    replica: Opener,
) -> None:
    a, b = await replica(), await replica()
    await a.versions.add("a: 1\n", "alice")
    changes = b.versions.changes()
    first = asyncio.ensure_future(anext(changes))
    try:
        await asyncio.sleep(0.2)  # the iterator takes note of the newest number when it starts
        await a.versions.add("a: 2\n", "alice")
        assert await asyncio.wait_for(first, 1.5) == 2
        await a.versions.add("a: 3\n", "alice")
        await a.versions.add("a: 4\n", "alice")
        assert await asyncio.wait_for(anext(changes), 1.5) == 3
        assert await asyncio.wait_for(anext(changes), 1.5) == 4
    finally:
        first.cancel()
        await changes.aclose()


# Exposures


def _seen(visitor: str, variant: str, at: float, table: str = "home") -> Exposure:
    return Exposure(visitor, table, "hero", variant, 1, "/me/products", at)


async def test_the_report_counts_orders_from_each_visitors_first_exposure(
    replica: Opener,
) -> None:
    a, b = await replica(), await replica()
    await a.exposures.add(
        [
            _seen("v1", "A", 100.0),
            _seen("v1", "A", 150.0),  # a second exposure: counted, same visitor
            _seen("v2", "A", 200.0),
            _seen("v3", "B", 100.0),
            _seen("v4", "B", 300.0),
            _seen("v1", "X", 130.0, table="cart"),
        ]
    )
    await b.exposures.add([_seen(v, "C", 100.0) for v in ("v5", "v6", "v7")])
    await a.exposures.convert("v1", "o1", 10.0, 120.0)  # A yes (first at 100), X no (130)
    await b.exposures.convert("v1", "o1", 10.0, 120.0)  # the same order again: counted once
    await a.exposures.convert("v2", "o2", 99.0, 150.0)  # before v2's first exposure: not counted
    await a.exposures.convert("v2", "o3", 5.25, 250.0)
    await a.exposures.convert("v4", "o4", 20.0, 300.0)  # at the first exposure itself: counted
    await a.exposures.convert("v1", "o5", 1.0, 400.0)  # A and X
    await a.exposures.convert("v5", "o6", 3.0, 100.0)
    await a.exposures.convert("v8", "o7", 7.0, 500.0)  # before its exposure is recorded
    await b.exposures.add([_seen("v8", "D", 450.0)])
    await a.exposures.convert("v9", "o8", 50.0, 500.0)  # never exposed: in no variant

    def row(table: str, variant: str, *counts: Any) -> dict[str, Any]:
        names = ("exposures", "visitors", "converted", "orders", "revenue", "conversion_rate")
        return {"table_id": table, "rule_id": "hero", "variant": variant} | dict(
            zip(names, counts, strict=True)
        )

    assert await b.exposures.report() == [
        row("cart", "X", 1, 1, 1, 1, 1.0, 1.0),
        row("home", "A", 3, 2, 2, 3, 16.25, 1.0),
        row("home", "B", 2, 2, 1, 1, 20.0, 0.5),
        row("home", "C", 3, 3, 1, 1, 3.0, 0.3333),
        row("home", "D", 1, 1, 1, 1, 7.0, 1.0),
    ]


async def test_an_empty_report(replica: Opener) -> None:
    state = await replica()
    await state.exposures.add([])
    assert await state.exposures.report() == []


# The Redis backend when Redis is away


async def test_every_call_raises_promptly_when_redis_is_down(tmp_path: Path) -> None:
    down = StateConfig(f"redis://127.0.0.1:{free_port()}/0", spool=tmp_path / "spool.db")
    state = await open_state(down)  # opening does not need Redis: the gateway starts without it
    calls: list[Awaitable[object]] = [
        state.profiles.get("joe"),
        state.profiles.update("joe", _count_order),
        state.browser_ids.get("joe"),
        state.browser_ids.put("joe", "b"),
        state.browser_ids.put_new("joe", "b"),
        _change(state, "joe", _line("l1", "p1", 1, 1.0)),
        state.carts.close("joe"),
        state.carts.move("anon", "joe"),
        state.carts.idle(1.0),
        state.carts.reported("joe", 1),
        state.versions.add("a: 1\n", "alice"),
        state.versions.get(1),
        state.versions.latest_number(),
        state.versions.list(),
        # (exposures.add, like the outbox's append, spools instead: test_state_outbox.py)
        state.exposures.convert("v1", "o1", 1.0, 1.0),
        state.exposures.report(),
    ]
    try:
        for call in calls:
            with pytest.raises(RedisError):
                await asyncio.wait_for(call, 5)
    finally:
        await state.close()


async def test_version_changes_survive_a_redis_restart(tmp_path: Path) -> None:
    from state.redis import connect
    from state.redis.versions import RedisTableVersions

    server = RedisProcess(tmp_path / "redis")
    config = StateConfig(server.url, prefix="restart:")

    async def publish(source: str) -> None:
        # A client of its own each time: only the watcher's way through the restart is tested.
        client = connect(config)
        try:
            await RedisTableVersions(client, config.prefix).add(source, "alice")
        finally:
            await client.aclose()

    watcher = connect(config)
    changes = RedisTableVersions(watcher, config.prefix, poll_seconds=0.2).changes()
    try:
        server.start()
        try:
            first = asyncio.ensure_future(anext(changes))
            await asyncio.sleep(0.2)  # the iterator takes note of the newest number
            await publish("a: 1\n")
            assert await asyncio.wait_for(first, 1.5) == 1
            following = asyncio.ensure_future(anext(changes))
        finally:
            server.kill()
        await asyncio.sleep(0.5)  # the iterator meets the outage: it must wait, not raise
        assert not following.done()
        server.start()
        try:
            await publish("a: 2\n")
            assert await asyncio.wait_for(following, 2.5) == 2
            await changes.aclose()
        finally:
            server.kill()
    finally:
        await watcher.aclose()
