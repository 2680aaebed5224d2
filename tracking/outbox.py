"""The durable outbox: one row per event, one delivery row per (event, destination).

Delivery rows carry an ordering key (the visitor) so the dispatcher can hold a visitor's later
events back while an earlier one is unhydrated, backing off or in flight. The backlog is read in
bounded pages, so a million pending rows cost disk, not memory. Functions take a connection so the
CLI can run them on its own connection; `Outbox` runs them on the shared `Store`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial

from state.events import Event
from tracking.store import Store

PENDING, DELIVERED, DEAD = 0, 1, 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    visitor TEXT,
    occurred_at REAL NOT NULL,
    ready INTEGER NOT NULL DEFAULT 0,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    dest TEXT NOT NULL,
    seq INTEGER NOT NULL,
    okey TEXT NOT NULL,
    ready INTEGER NOT NULL DEFAULT 0,
    state INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0,
    queued_at REAL NOT NULL,
    error TEXT,
    PRIMARY KEY (dest, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries (dest, seq) WHERE state = 0;
-- Submitted orders, for the conversions of `ocgateway experiments report` (decisions/).
CREATE VIEW IF NOT EXISTS decision_orders AS
    SELECT visitor AS visitor_id,
           json_extract(body, '$.data.order.ID') AS order_id,
           coalesce(json_extract(body, '$.data.order.Total'), 0) AS total,
           occurred_at AS submitted_at
    FROM events WHERE type = 'orders.submitted' AND ready = 1;
"""

_PAGE = 500


@dataclass(frozen=True, slots=True)
class Due:
    """A delivery the dispatcher may attempt now."""

    seq: int
    key: str
    attempts: int
    queued_at: float


def order_key(event: Event) -> str:
    return event.visitor or f"pending-{event.id}"


def append(
    conn: sqlite3.Connection, items: Sequence[tuple[Event, Sequence[str]]], now: float, ready: bool
) -> list[int]:
    """Insert events with their delivery rows; returns their sequence numbers."""
    seqs = []
    for event, dests in items:
        cur = conn.execute(
            "INSERT INTO events (id, type, visitor, occurred_at, ready, body) VALUES (?,?,?,?,?,?)",
            (event.id, event.type, event.visitor, event.occurred_at, int(ready), event.to_json()),
        )
        seq = int(cur.lastrowid or 0)
        key = order_key(event)
        conn.executemany(
            "INSERT INTO deliveries (dest, seq, okey, ready, queued_at) VALUES (?,?,?,?,?)",
            [(dest, seq, key, int(ready), now) for dest in dests],
        )
        seqs.append(seq)
    return seqs


def mark_ready(conn: sqlite3.Connection, seq: int, event: Event) -> None:
    """Store the hydrated event and release its deliveries to the dispatcher."""
    conn.execute(
        "UPDATE events SET body = ?, visitor = ?, ready = 1 WHERE seq = ?",
        (event.to_json(), event.visitor, seq),
    )
    conn.execute("UPDATE deliveries SET ready = 1, okey = ? WHERE seq = ?", (order_key(event), seq))


def unready(conn: sqlite3.Connection) -> list[tuple[int, Event]]:
    """Events recorded but never hydrated (the process died in between)."""
    rows = conn.execute("SELECT seq, body FROM events WHERE ready = 0 ORDER BY seq").fetchall()
    return [(seq, Event.from_json(body)) for seq, body in rows]


def due(
    conn: sqlite3.Connection,
    dest: str,
    now: float,
    busy: Iterable[str],
    *,
    limit: int,
    per_key: int,
    max_keys: int | None = None,
    max_scan: int = 8 * _PAGE,
) -> tuple[dict[str, list[Due]], float | None]:
    """Deliveries to attempt now, grouped by key in order, and when the next held one is due.

    Walks pending rows in sequence order. The first row of a key that cannot go now (unhydrated,
    backing off, or its key busy) holds back every later row of that key: per-visitor order.
    """
    held = set(busy)
    picked: dict[str, list[Due]] = {}
    count, scanned, after = 0, 0, 0
    next_due: float | None = None
    while scanned < max_scan:
        rows = conn.execute(
            "SELECT seq, okey, ready, next_at, attempts, queued_at FROM deliveries"
            " WHERE dest = ? AND state = 0 AND seq > ? ORDER BY seq LIMIT ?",
            (dest, after, _PAGE),
        ).fetchall()
        if not rows or (max_keys is not None and len(picked) >= max_keys):
            break  # every free slot has a visitor: stop reading pages
        scanned += len(rows)
        after = rows[-1][0]
        for seq, key, ready_, next_at, attempts, queued_at in rows:
            if key in held:
                continue
            if not ready_ or next_at > now or (key not in picked and len(picked) == max_keys):
                held.add(key)
                if ready_:
                    next_due = next_at if next_due is None else min(next_due, next_at)
                continue
            group = picked.setdefault(key, [])
            group.append(Due(seq, key, attempts, queued_at))
            count += 1
            if len(group) >= per_key:
                held.add(key)
            if count >= limit:
                return picked, next_due
    return picked, next_due


def bodies(conn: sqlite3.Connection, seqs: Sequence[int]) -> dict[int, Event]:
    out: dict[int, Event] = {}
    for start in range(0, len(seqs), _PAGE):
        chunk = list(seqs[start : start + _PAGE])
        marks = ",".join("?" * len(chunk))
        for seq, body in conn.execute(
            f"SELECT seq, body FROM events WHERE seq IN ({marks})", chunk
        ):
            out[seq] = Event.from_json(body)
    return out


def delivered(conn: sqlite3.Connection, dest: str, seqs: Sequence[int]) -> None:
    conn.executemany(
        "UPDATE deliveries SET state = 1, attempts = attempts + 1, error = NULL"
        " WHERE dest = ? AND seq = ?",
        [(dest, seq) for seq in seqs],
    )


def failed(
    conn: sqlite3.Connection, dest: str, seq: int, next_at: float, error: str, dead: bool
) -> None:
    conn.execute(
        "UPDATE deliveries SET attempts = attempts + 1, next_at = ?, error = ?, state = ?"
        " WHERE dest = ? AND seq = ?",
        (next_at, error[:500], DEAD if dead else PENDING, dest, seq),
    )


def stats(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """Per destination: pending, delivered and dead deliveries."""
    names = {PENDING: "pending", DELIVERED: "delivered", DEAD: "dead"}
    out: dict[str, dict[str, int]] = {}
    for dest, state, count in conn.execute(
        "SELECT dest, state, count(*) FROM deliveries GROUP BY dest, state"
    ):
        out.setdefault(dest, {"pending": 0, "delivered": 0, "dead": 0})[names[state]] = count
    return out


def recent(conn: sqlite3.Connection, n: int, after: int = 0) -> list[tuple[int, Event]]:
    """The last `n` events (or, with `after`, those newer than that sequence number), oldest first."""
    if after:
        rows = conn.execute(
            "SELECT seq, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (after, n)
        ).fetchall()
    else:
        rows = conn.execute(
            "SELECT seq, body FROM events ORDER BY seq DESC LIMIT ?", (n,)
        ).fetchall()[::-1]
    return [(seq, Event.from_json(body)) for seq, body in rows]


def requeue_dead(conn: sqlite3.Connection, now: float, dest: str | None = None) -> int:
    """Put dead deliveries back in the queue, same event ids, attempts and age reset."""
    where, args = ("state = 2", ()) if dest is None else ("state = 2 AND dest = ?", (dest,))
    cur = conn.execute(
        f"UPDATE deliveries SET state = 0, attempts = 0, next_at = 0, queued_at = ?, error = NULL"
        f" WHERE {where}",
        (now, *args),
    )
    return cur.rowcount


class Outbox:
    """The outbox functions run on the shared store (writes group-committed)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def append(
        self, items: Sequence[tuple[Event, Sequence[str]]], now: float, ready: bool = False
    ) -> list[int]:
        return await self.store.write(partial(append, items=items, now=now, ready=ready))

    async def unready(self) -> list[tuple[int, Event]]:
        return await self.store.read(unready)

    async def work(
        self,
        dest: str,
        now: float,
        busy: Iterable[str],
        *,
        limit: int,
        per_key: int,
        max_keys: int | None,
    ) -> tuple[dict[str, list[Due]], float | None, dict[int, Event]]:
        """`due` plus the picked events' bodies, in one trip to the reader thread."""

        def run(
            conn: sqlite3.Connection,
        ) -> tuple[dict[str, list[Due]], float | None, dict[int, Event]]:
            picked, next_due = due(
                conn, dest, now, busy, limit=limit, per_key=per_key, max_keys=max_keys
            )
            seqs = [d.seq for group in picked.values() for d in group]
            return picked, next_due, bodies(conn, seqs)

        busy = tuple(busy)
        return await self.store.read(run)

    async def delivered(self, dest: str, seqs: Sequence[int]) -> None:
        await self.store.write(partial(delivered, dest=dest, seqs=seqs))

    async def failed(self, dest: str, seq: int, next_at: float, error: str, dead: bool) -> None:
        await self.store.write(
            partial(failed, dest=dest, seq=seq, next_at=next_at, error=error, dead=dead)
        )

    async def stats(self) -> dict[str, dict[str, int]]:
        return await self.store.read(stats)
