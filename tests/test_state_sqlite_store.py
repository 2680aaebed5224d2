"""The SQLite store's write paths: group commit on the writer thread, and the inline commit on the
loop for a small write when nothing else is writing (never blocking the loop on a lock)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from state.sqlite.store import CHECKPOINT_EVERY, Store, connect

pytestmark = pytest.mark.anyio
SCHEMA = "CREATE TABLE IF NOT EXISTS t (n INTEGER NOT NULL);"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = Store(tmp_path / "s.db", SCHEMA)
    opened.open()
    try:
        yield opened
    finally:
        opened.close()


def insert(n: int) -> Callable[[sqlite3.Connection], int]:
    def run(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO t (n) VALUES (?)", (n,))
        return n

    return run


async def rows(store: Store) -> list[int]:
    found = await store.read(lambda c: c.execute("SELECT n FROM t ORDER BY n").fetchall())
    return [n for (n,) in found]


async def test_a_write_alone_commits_on_the_loop(store: Store) -> None:
    assert await store.write(insert(1), inline=True) == 1
    assert (store.inline_commits, store.commits) == (1, 0)
    assert await rows(store) == [1]


async def test_a_write_not_marked_inline_goes_to_the_writer(store: Store) -> None:
    await store.write(insert(1))
    assert (store.inline_commits, store.commits) == (0, 1)


async def test_the_writes_of_one_loop_turn_share_the_writers_commits(store: Store) -> None:
    done = await asyncio.gather(*(store.write(insert(n), inline=True) for n in range(20)))
    assert done == list(range(20))
    assert store.inline_commits == 1  # the first; the other 19 went to the writer together
    assert store.commits < 19
    assert await rows(store) == list(range(20))


async def test_a_lock_held_elsewhere_sends_the_write_to_the_writer_and_the_loop_runs_on(
    store: Store,
) -> None:
    other = connect(store.path)
    other.execute("BEGIN IMMEDIATE")  # another process's writer, say
    try:
        pending = asyncio.create_task(store.write(insert(7), inline=True))
        await asyncio.sleep(0.05)  # the loop is free while the write waits for the lock
        assert not pending.done()
    finally:
        other.execute("COMMIT")
        other.close()
    assert await asyncio.wait_for(pending, 5) == 7
    assert store.inline_commits == 0
    assert await rows(store) == [7]


async def test_an_inline_write_that_fails_is_the_callers_and_leaves_nothing(store: Store) -> None:
    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (n) VALUES (1)")
        raise ValueError("bad row")

    with pytest.raises(ValueError, match="bad row"):
        await store.write(broken, inline=True)
    await asyncio.sleep(0)  # a new loop turn: inline again
    await store.write(insert(2), inline=True)
    assert await rows(store) == [2]


async def test_inline_commits_are_checkpointed_so_the_wal_stops_growing(store: Store) -> None:
    wal = Path(f"{store.path}-wal")

    async def inline_writes(count: int) -> None:
        for n in range(count):
            await store.write(insert(n), inline=True)
            await asyncio.sleep(0)  # each in a turn of its own: every one commits inline
        await store.read(lambda c: None)

    await inline_writes(6 * CHECKPOINT_EVERY)
    assert store.inline_commits > 5.9 * CHECKPOINT_EVERY  # a few wait behind a checkpoint
    settled = wal.stat().st_size  # commits made while a checkpoint runs wait for the next
    await inline_writes(6 * CHECKPOINT_EVERY)
    assert wal.stat().st_size <= settled * 1.2  # without checkpoints it would double
