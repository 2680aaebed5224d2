"""`ocgateway store migrate`: a SQLite store filled through the state interfaces, copied into a
real Redis by the command, answers the same there; a second run copies nothing twice."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from state import State, StateConfig, open_state
from state.accounts import Account
from state.audit import AuditEntry
from state.drafts import Draft
from state.events import LINE_ADDED, PRODUCT_VIEWED, Event
from state.exposures import Exposure
from state.outbox import Delivery
from state.profiles import Profile
from state.shoppers import SavedShopper

pytestmark = pytest.mark.anyio

VISITORS = ("anon-o1", "acme-jane", "acme-joe")
T0 = 1_700_000_000.0


def _line(line_id: str, product: str) -> dict[str, Any]:
    return {"ID": line_id, "ProductID": product, "Quantity": 1, "LineTotal": 10.0}


async def _fill(state: State) -> dict[str, list[str]]:
    """Every kind of state; returns the pending webhook event ids per visitor, in record order."""
    await state.versions.add("tables: []\n", "file", "from the tables file")
    await state.versions.add("tables: [a]\n", "alice", "hero banner")
    for i, visitor in enumerate(VISITORS):
        await state.profiles.update(
            visitor, lambda _, v=visitor, n=i: Profile(v, orders=n, viewed_products=["p1"])
        )
        await state.browser_ids.put(visitor, f"browser-{i}")
    for visitor, lines in (("anon-o1", ["l1", "l2"]), ("acme-joe", ["l3"])):
        for line in lines:
            await state.carts.change(
                visitor,
                _line(line, f"prod-{line}"),
                removed=False,
                order_id=f"order-{visitor}",
                anonymous=visitor.startswith("anon"),
                browser_id=None,
                now=T0,
            )
    (joe,) = [c for c in await state.carts.idle(T0 + 1) if c.visitor == "acme-joe"]
    assert await state.carts.reported("acme-joe", joe.version)
    await state.exposures.add(
        [
            Exposure("acme-jane", "home", "hero", "a", 2, "/me/products", T0),
            Exposure("acme-joe", "home", "hero", "b", 2, "/me/products", T0),
            Exposure("acme-joe", "home", "hero", "b", 2, "/me/products", T0 + 5),
        ]
    )
    await state.exposures.convert("acme-joe", "order-9", 42.5, T0 + 10)
    console = state.console
    await console.accounts.put(Account("mia", "publisher", "$argon2id$hash", T0))
    await console.shoppers.put(SavedShopper("big spender", orders=9, spent=900.0))
    await console.drafts.create(
        Draft("d1", "Hero b", "tables: [b]\n", 2, "mia", T0, T0 + 1, "mia", editors=("mia",))
    )
    for n, action in enumerate(("sign-in", "draft saved")):
        await console.audit.add(AuditEntry(T0 + n, "mia", action, "draft d1"))

    events = [
        Event(LINE_ADDED if n % 2 else PRODUCT_VIEWED, visitor, T0 + n, data={"n": n})
        for n in range(4)
        for visitor in VISITORS
    ]
    await state.outbox.append(events, [["webhook", "file"]] * len(events), T0, 0.0)
    # The file took everything; the webhook gave up on jane's first event.
    await state.outbox.ack("file", await _lease(state, "file"))
    jane_first = next(e.id for e in events if e.visitor == "acme-jane")
    for delivery in await _lease(state, "webhook"):  # the rest stay pending
        if delivery.event.id == jane_first:
            await state.outbox.retry("webhook", delivery, time.time(), "HTTP 400: bad", True)
    pending: dict[str, list[str]] = {}
    for event in events:
        if event.id != jane_first:
            pending.setdefault(str(event.visitor), []).append(event.id)
    return pending


async def _lease(state: State, dest: str) -> list[Delivery]:
    leased = await state.outbox.lease(
        dest, time.time(), limit=1000, per_key=1000, max_keys=None, busy=()
    )
    return [d for group in leased.groups.values() for d in group]


@pytest.fixture
def env(
    tmp_path: Path, redis_url: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> StateConfig:
    """The command reads its settings from the environment, like every `ocgateway` command."""
    monkeypatch.setenv("OCGW_REDIS_PREFIX", redis_prefix)
    monkeypatch.setenv("OCGW_SPOOL", str(tmp_path / "spool.db"))
    monkeypatch.setenv("OCGW_LEASE_SECONDS", "1")
    monkeypatch.setenv("OCGW_PARTITIONS", "4")
    return StateConfig(
        redis_url,
        prefix=redis_prefix,
        spool=tmp_path / "check-spool.db",
        lease_seconds=1.0,
        partitions=4,
    )


@pytest.fixture
async def source(tmp_path: Path) -> AsyncIterator[tuple[State, dict[str, list[str]]]]:
    state = await open_state(StateConfig(str(tmp_path / "gateway.db")))
    pending = await _fill(state)
    yield state, pending
    await state.close()


async def _command(*args: str) -> int:
    return await asyncio.to_thread(main, ["store", "migrate", *args])


async def _lease_all(state: State, dest: str, expected: int) -> dict[str, list[str]]:
    """Lease until `expected` deliveries came out (partitions are taken over within a lease
    time of the migration's own replica leaving); event ids per key, in the order leased."""
    got: dict[str, list[str]] = {}
    deadline = time.monotonic() + 5
    while sum(map(len, got.values())) < expected and time.monotonic() < deadline:
        leased = await state.outbox.lease(
            dest, time.time(), limit=1000, per_key=1000, max_keys=None, busy=tuple(got)
        )
        for key, group in leased.groups.items():
            got.setdefault(key, []).extend(d.event.id for d in group)
        await asyncio.sleep(0.1)
    return got


async def test_a_sqlite_store_migrated_to_redis_answers_the_same(
    source: tuple[State, dict[str, list[str]]],
    env: StateConfig,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sqlite, pending = source
    db = str(tmp_path / "gateway.db")

    assert await _command("--from", db, "--to", env.location, "--dry-run") == 0
    out = capsys.readouterr().out
    assert "versions: 2 to copy" in out and "pending deliveries: 11 to copy" in out
    assert "dead deliveries: 1 to copy" in out

    assert await _command("--from", db, "--to", env.location) == 0
    out = capsys.readouterr().out
    for line in ("versions: 2 copied", "profiles: 3 copied", "carts: 2 copied", "exposures: 3"):
        assert line in out
    assert "pending deliveries: 11 copied" in out and "dead deliveries: 1 copied" in out

    redis = await open_state(env)
    try:
        assert await redis.versions.latest_number() == 2
        assert await redis.versions.get(2) == await sqlite.versions.get(2)
        assert await redis.versions.list() == await sqlite.versions.list()
        for visitor in VISITORS:
            assert await redis.profiles.get(visitor) == await sqlite.profiles.get(visitor)
            assert await redis.browser_ids.get(visitor) == await sqlite.browser_ids.get(visitor)
        idle = await redis.carts.idle(T0 + 1)
        assert [(c.visitor, c.lines, c.updated_at) for c in idle] == [
            ("anon-o1", [_line("l1", "prod-l1"), _line("l2", "prod-l2")], T0)
        ]  # joe's cart was reported already
        assert await redis.exposures.report() == await sqlite.exposures.report()
        ours, theirs = redis.console, sqlite.console
        assert await ours.accounts.list() == await theirs.accounts.list() != []
        assert await ours.shoppers.list() == await theirs.shoppers.list() != []
        assert await ours.drafts.list() == await theirs.drafts.list() != []
        assert await ours.audit.recent() == await theirs.audit.recent() != []
        stats = await redis.outbox.stats()
        assert stats["webhook"]["pending"] == 11 and stats["webhook"]["dead"] == 1
        assert "file" not in stats  # nothing left for it

        assert await _lease_all(redis, "webhook", 11) == pending

        # A second run refuses and changes nothing.
        assert await _command("--from", db, "--to", env.location) == 1
        assert "already holds 2 table versions" in capsys.readouterr().err
        assert (await redis.outbox.stats())["webhook"]["pending"] == 11
        assert await redis.versions.latest_number() == 2
        assert await _command("--from", db, "--to", env.location, "--dry-run") == 0
        assert "a real run would refuse" in capsys.readouterr().out
    finally:
        await redis.close()

    # Forced (no gateway consuming the target any more), it numbers no version twice.
    assert await _command("--from", db, "--to", env.location, "--force") == 0
    assert "versions: 0 copied (2 already there, skipped)" in capsys.readouterr().out
    redis = await open_state(env)
    try:
        assert await redis.versions.list() == await sqlite.versions.list()
        assert (await redis.outbox.stats())["webhook"]["dead"] == 2  # added again, as documented
    finally:
        await redis.close()


async def test_a_redis_source_is_refused(
    env: StateConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await _command("--from", env.location, "--to", str(tmp_path / "copy.db")) == 1
    assert "must be a SQLite file" in capsys.readouterr().err
