"""The SQLite outbox: durable appends, group commit, due selection in per-visitor order, CLI."""

from __future__ import annotations

import argparse
import asyncio
import json
from functools import partial
from pathlib import Path

import pytest

from state.events import Event
from tracking import commands, outbox
from tracking.outbox import Outbox
from tracking.store import Store, connect

pytestmark = pytest.mark.anyio


def event(visitor: str | None, n: int = 0) -> Event:
    return Event(type="products.viewed", visitor=visitor, occurred_at=1000.0 + n, data={"n": n})


async def opened(path: Path, **kw: int) -> tuple[Store, Outbox]:
    store = Store(path, outbox.SCHEMA, **kw)
    await asyncio.to_thread(store.open)
    return store, Outbox(store)


async def test_appended_events_survive_a_reopen(tmp_path: Path) -> None:
    store, box = await opened(tmp_path / "o.db")
    first = event("v1")
    [seq] = await box.append([(first, ["file", "cdp"])], now=1.0)
    store.close()
    store, box = await opened(tmp_path / "o.db")
    [(again, kept)] = await box.unready()
    assert (again, kept.id) == (seq, first.id)
    await store.write(partial(outbox.mark_ready, seq=seq, event=kept))
    picked, _, _ = await box.work("cdp", 2.0, (), limit=10, per_key=10, max_keys=None)
    assert [d.seq for d in picked["v1"]] == [seq]
    assert (await box.stats())["file"] == {"pending": 1, "delivered": 0, "dead": 0}
    store.close()


async def test_concurrent_appends_share_commits(tmp_path: Path) -> None:
    store, box = await opened(tmp_path / "g.db")
    await asyncio.gather(*(box.append([(event(f"v{i}"), ["file"])], 1.0) for i in range(300)))
    assert store.commits < 300 / 5
    assert sum((await box.stats())["file"].values()) == 300
    store.close()


async def test_one_failing_write_does_not_undo_its_batch(tmp_path: Path) -> None:
    store, box = await opened(tmp_path / "f.db")

    def broken(conn: object) -> None:
        raise ValueError("bad write")

    results = await asyncio.gather(
        box.append([(event("v1"), ["file"])], 1.0),
        store.write(broken),
        box.append([(event("v2"), ["file"])], 1.0),
        return_exceptions=True,
    )
    assert [type(r) for r in results] == [list, ValueError, list]
    assert store.commits == 1
    assert (await box.stats())["file"]["pending"] == 2
    store.close()


async def test_due_holds_a_visitor_behind_its_first_undeliverable_event(tmp_path: Path) -> None:
    store, box = await opened(tmp_path / "d.db")
    seqs = []
    for visitor, n in [("a", 0), ("b", 1), ("a", 2), ("c", 3), ("b", 4), ("c", 5)]:
        [s] = await box.append([(event(visitor, n), ["cdp"])], 1.0, ready=visitor != "b")
        seqs.append(s)
    await box.failed("cdp", seqs[3], next_at=50.0, error="HTTP 500", dead=False)  # c backs off
    picked, next_due, _ = await box.work("cdp", 10.0, (), limit=10, per_key=10, max_keys=None)
    assert {k: [d.seq for d in v] for k, v in picked.items()} == {"a": [seqs[0], seqs[2]]}
    assert next_due == 50.0
    picked, _, _ = await box.work("cdp", 60.0, ("a",), limit=10, per_key=10, max_keys=None)
    assert list(picked) == ["c"] and picked["c"][0].attempts == 1
    picked, _, events = await box.work("cdp", 60.0, (), limit=10, per_key=10, max_keys=1)
    assert list(picked) == ["a"] and sorted(events) == [seqs[0], seqs[2]]
    store.close()


async def test_dead_deliveries_are_replayed_with_the_same_event(tmp_path: Path) -> None:
    store, box = await opened(tmp_path / "r.db")
    [seq] = await box.append([(event("a"), ["webhook"])], 1.0, ready=True)
    await box.failed("webhook", seq, 0.0, "HTTP 400", dead=True)
    assert (await box.stats())["webhook"]["dead"] == 1
    store.close()
    conn = connect(tmp_path / "r.db")
    assert outbox.requeue_dead(conn, 5.0) == 1
    conn.close()
    store, box = await opened(tmp_path / "r.db")
    picked, _, _ = await box.work("webhook", 6.0, (), limit=10, per_key=10, max_keys=None)
    assert picked["a"][0].seq == seq and picked["a"][0].attempts == 0
    store.close()


async def test_events_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "c.db"
    store, box = await opened(db)
    [s1] = await box.append([(event("a", 1), ["webhook", "file"])], 1.0, ready=True)
    await box.delivered("file", [s1])
    await box.failed("webhook", s1, 0.0, "HTTP 410", dead=True)
    store.close()

    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers(dest="command"))

    def run(*argv: str) -> str:
        args = parser.parse_args(list(argv))
        assert args.func(args) == 0
        return capsys.readouterr().out

    table = json.loads(run("events", "stats", "--store", str(db), "--json"))
    assert table == {
        "file": {"pending": 0, "delivered": 1, "dead": 0},
        "webhook": {"pending": 0, "delivered": 0, "dead": 1},
    }
    assert "products.viewed" in run("events", "tail", "--store", str(db), "-n", "5")
    assert "requeued 1" in run("events", "replay", "--dead", "--store", str(db))
    assert (
        json.loads(run("events", "stats", "--store", str(db), "--json"))["webhook"]["pending"] == 1
    )
