"""The local spool: events recorded while Redis is unreachable wait here, on this machine's disk
(and the exposures the experiment report counts, in a table of their own).

Recording an event must not fail the storefront because Redis is down, and nothing acknowledged
may be lost. So `RedisOutbox.append` falls back to this small SQLite table (committed with a full
fsync before `append` returns) and a mover drains it into Redis in record order once Redis
answers. One spool file per process (two processes draining one file would send events twice):
each process takes the first `{name}-{n}` file beside the configured path whose lock no live
process holds, so `--workers N` on one machine get N files, and a restarted process takes over
(and drains) what a killed one left behind.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson

from state.events import Event
from state.exposures import Exposure

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    okey TEXT NOT NULL,
    body TEXT NOT NULL,
    routes TEXT NOT NULL,
    queued_at REAL NOT NULL,
    hold_until REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS spool_event ON spool (event_id);
CREATE TABLE IF NOT EXISTS spooled_exposures (
    seq INTEGER PRIMARY KEY,
    exposure TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Record:
    """One event as the outbox stores it: what a partition stream entry is made from."""

    event_id: str
    key: str
    body: str
    routes: tuple[str, ...]
    queued_at: float
    hold_until: float

    @classmethod
    def of(cls, event: Event, routes: Sequence[str], now: float, hold_until: float) -> Record:
        return cls(event.id, event.order_key, event.to_json(), tuple(routes), now, hold_until)


MAX_SPOOLS = 256  # processes on one machine sharing one configured spool path


def claim(base: Path) -> tuple[Path, int]:
    """The first spool file no live process holds, and the open lock that makes it ours (an
    exclusive flock, released by the kernel when the process dies)."""
    base.parent.mkdir(parents=True, exist_ok=True)
    for n in range(MAX_SPOOLS):
        path = base.with_name(f"{base.stem}-{n}{base.suffix}")
        fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return path, fd
    raise RuntimeError(f"no free spool beside {base}: {MAX_SPOOLS} processes hold one each")


class Spool:
    """A FIFO of records on disk; every call runs on one thread that owns the connection."""

    def __init__(self, base: Path) -> None:
        self.path, self._lock = claim(base)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ocgw-spool")
        self._conn: sqlite3.Connection | None = None

    async def _run(self, work: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, work, *args)

    async def open(self) -> int:
        """Open (creating) the file; returns how many records a previous run left behind."""
        return await self._run(self._open)

    def _open(self) -> int:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # an acknowledged event survives a power cut
        conn.executescript(SCHEMA)
        self._conn = conn
        return int(conn.execute("SELECT count(*) FROM spool").fetchone()[0])

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("spool is not open")
        return self._conn

    async def add(self, records: Sequence[Record]) -> None:
        await self._run(self._add, records)

    def _add(self, records: Sequence[Record]) -> None:
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.executemany(
                "INSERT INTO spool (event_id, okey, body, routes, queued_at, hold_until)"
                " VALUES (?,?,?,?,?,?)",
                [
                    (
                        r.event_id,
                        r.key,
                        r.body,
                        orjson.dumps(r.routes).decode(),
                        r.queued_at,
                        r.hold_until,
                    )
                    for r in records
                ],
            )

    async def hydrate(self, events: Sequence[Event]) -> None:
        """Released while still spooled: the hydrated body replaces the recorded one."""
        await self._run(self._hydrate, events)

    def _hydrate(self, events: Sequence[Event]) -> None:
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.executemany(
                "UPDATE spool SET body = ?, hold_until = 0 WHERE event_id = ?",
                [(e.to_json(), e.id) for e in events],
            )

    async def oldest(self, n: int) -> list[tuple[int, Record]]:
        return await self._run(self._oldest, n)

    def _oldest(self, n: int) -> list[tuple[int, Record]]:
        rows = self.conn.execute(
            "SELECT seq, event_id, okey, body, routes, queued_at, hold_until FROM spool"
            " ORDER BY seq LIMIT ?",
            (n,),
        ).fetchall()
        return [
            (seq, Record(eid, key, body, tuple(orjson.loads(routes)), queued_at, hold_until))
            for seq, eid, key, body, routes, queued_at, hold_until in rows
        ]

    async def drop(self, seqs: Sequence[int]) -> None:
        """Forget records once Redis has them (up to and including the highest of `seqs`)."""
        await self._run(self._drop, max(seqs))

    def _drop(self, last: int) -> None:
        self.conn.execute("DELETE FROM spool WHERE seq <= ?", (last,))

    async def add_exposures(self, exposures: Sequence[Exposure]) -> None:
        """Exposures for the experiment report, waiting for Redis like the events."""
        await self._run(self._add_exposures, exposures)

    def _add_exposures(self, exposures: Sequence[Exposure]) -> None:
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.executemany(
                "INSERT INTO spooled_exposures (exposure) VALUES (?)",
                [(orjson.dumps(astuple(e)).decode(),) for e in exposures],
            )

    async def exposures_waiting(self) -> int:
        return await self._run(
            lambda: int(self.conn.execute("SELECT count(*) FROM spooled_exposures").fetchone()[0])
        )

    async def oldest_exposures(self, n: int) -> list[tuple[int, Exposure]]:
        return await self._run(self._oldest_exposures, n)

    def _oldest_exposures(self, n: int) -> list[tuple[int, Exposure]]:
        rows = self.conn.execute(
            "SELECT seq, exposure FROM spooled_exposures ORDER BY seq LIMIT ?", (n,)
        ).fetchall()
        return [(seq, Exposure(*orjson.loads(text))) for seq, text in rows]

    async def drop_exposures(self, last: int) -> None:
        """Forget exposures once Redis has them (up to and including `last`)."""
        await self._run(
            lambda: self.conn.execute("DELETE FROM spooled_exposures WHERE seq <= ?", (last,))
        )

    async def close(self) -> None:
        if self._conn is not None:
            await self._run(self._conn.close)
            self._conn = None
        self._thread.shutdown(wait=False)
        if self._lock >= 0:
            os.close(self._lock)  # another process may take this file now
            self._lock = -1
