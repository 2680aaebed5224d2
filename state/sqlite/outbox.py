"""The outbox in SQLite: one row per event, one delivery row per (event, destination).

Several processes may share the file (`--workers N`, or replicas on one machine). A lease scans on
the reader connection, then claims on the writer with a conditional update per row (free, or
already ours), so two processes never hand out the same delivery, and a row leased by a process
that died is free again once its `lease_until` passes. The backlog is read in bounded pages: a million pending rows cost
disk, not memory.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Collection, Sequence
from functools import partial

from state.events import Event
from state.outbox import Delivery, Leased
from state.sqlite.store import Store

PENDING, DELIVERED, DEAD = 0, 1, 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    visitor TEXT,
    occurred_at REAL NOT NULL,
    released INTEGER NOT NULL DEFAULT 0,
    hold_until REAL NOT NULL DEFAULT 0,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_id ON events (id);
CREATE TABLE IF NOT EXISTS deliveries (
    dest TEXT NOT NULL,
    seq INTEGER NOT NULL,
    okey TEXT NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0,
    queued_at REAL NOT NULL,
    lease_until REAL NOT NULL DEFAULT 0,
    owner TEXT,
    error TEXT,
    PRIMARY KEY (dest, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries (dest, seq) WHERE state = 0;
"""

_PAGE = 500


def append(
    conn: sqlite3.Connection,
    events: Sequence[Event],
    routes: Sequence[Sequence[str]],
    now: float,
    hold_until: float,
) -> None:
    released = int(hold_until <= now)
    for event, dests in zip(events, routes):
        cur = conn.execute(
            "INSERT INTO events (id, type, visitor, occurred_at, released, hold_until, body)"
            " VALUES (?,?,?,?,?,?,?)",
            (
                event.id,
                event.type,
                event.visitor,
                event.occurred_at,
                released,
                hold_until,
                event.to_json(),
            ),
        )
        seq = int(cur.lastrowid or 0)
        conn.executemany(
            "INSERT INTO deliveries (dest, seq, okey, queued_at) VALUES (?,?,?,?)",
            [(dest, seq, event.order_key, now) for dest in dests],
        )


def release(conn: sqlite3.Connection, events: Sequence[Event]) -> None:
    conn.executemany(
        "UPDATE events SET body = ?, visitor = ?, released = 1 WHERE id = ? AND released = 0",
        [(e.to_json(), e.visitor, e.id) for e in events],
    )


def candidates(
    conn: sqlite3.Connection,
    dest: str,
    now: float,
    busy: Collection[str],
    owner: str,
    *,
    limit: int,
    per_key: int,
    max_keys: int | None,
    max_scan: int = 8 * _PAGE,
) -> tuple[dict[str, list[Delivery]], float | None]:
    """Walk pending rows in record order (a read: it runs beside the writer). The first row of a
    key that cannot go now (held for hydration, backing off, leased by another process, or its
    key busy here) holds back every later row of that key: per-visitor order. Rows this owner
    leased but did not finish (a chain stopped at a failure) are free to it again at once: its
    own in-flight keys arrive as `busy`."""
    held = set(busy)
    picked: dict[str, list[tuple[int, int, float]]] = {}
    count, scanned, after = 0, 0, 0
    next_due: float | None = None
    full = False
    while scanned < max_scan and not full:
        rows = conn.execute(
            "SELECT d.seq, d.okey, d.next_at, d.attempts, d.queued_at,"
            " CASE WHEN d.owner = ? THEN 0 ELSE d.lease_until END,"
            " e.released, e.hold_until FROM deliveries d JOIN events e ON e.seq = d.seq"
            " WHERE d.dest = ? AND d.state = 0 AND d.seq > ? ORDER BY d.seq LIMIT ?",
            (owner, dest, after, _PAGE),
        ).fetchall()
        if not rows or (max_keys is not None and len(picked) >= max_keys):
            break
        scanned += len(rows)
        after = rows[-1][0]
        for seq, key, next_at, attempts, queued_at, lease_until, released, hold_until in rows:
            if key in held:
                continue
            waiting = not released and hold_until > now
            if (
                waiting
                or next_at > now
                or lease_until > now
                or (key not in picked and len(picked) == max_keys)
            ):
                held.add(key)
                due_at = hold_until if waiting else max(next_at, lease_until)
                if due_at > now:
                    next_due = due_at if next_due is None else min(next_due, due_at)
                continue
            group = picked.setdefault(key, [])
            group.append((seq, attempts, queued_at))
            count += 1
            if len(group) >= per_key:
                held.add(key)
            if count >= limit:
                full = True
                break
    bodies = _bodies(conn, [seq for group in picked.values() for seq, *_ in group])
    groups = {
        key: [Delivery(str(seq), bodies[seq], attempts, at) for seq, attempts, at in rows]
        for key, rows in picked.items()
    }
    return groups, next_due


def claim(
    conn: sqlite3.Connection,
    dest: str,
    groups: dict[str, list[Delivery]],
    now: float,
    owner: str,
    lease_for: float,
) -> dict[str, list[Delivery]]:
    """Lease what the scan picked, unless another process took it meanwhile: a key keeps only
    the rows up to its first one this owner could not claim, so order holds."""
    claimed: dict[str, list[Delivery]] = {}
    for key, deliveries in groups.items():
        for delivery in deliveries:
            cur = conn.execute(
                "UPDATE deliveries SET lease_until = ?, owner = ? WHERE dest = ? AND seq = ?"
                " AND state = 0 AND (lease_until <= ? OR owner = ?)",
                (now + lease_for, owner, dest, int(delivery.ref), now, owner),
            )
            if cur.rowcount != 1:
                break
            claimed.setdefault(key, []).append(delivery)
    return claimed


def _bodies(conn: sqlite3.Connection, seqs: Sequence[int]) -> dict[int, Event]:
    out: dict[int, Event] = {}
    for start in range(0, len(seqs), _PAGE):
        chunk = list(seqs[start : start + _PAGE])
        marks = ",".join("?" * len(chunk))
        for seq, body in conn.execute(
            f"SELECT seq, body FROM events WHERE seq IN ({marks})", chunk
        ):
            out[seq] = Event.from_json(body)
    return out


def ack(conn: sqlite3.Connection, dest: str, refs: Sequence[str]) -> None:
    conn.executemany(
        "UPDATE deliveries SET state = 1, attempts = attempts + 1, error = NULL, lease_until = 0,"
        " owner = NULL WHERE dest = ? AND seq = ?",
        [(dest, int(ref)) for ref in refs],
    )


def retry(
    conn: sqlite3.Connection, dest: str, ref: str, next_at: float, error: str, dead: bool
) -> None:
    conn.execute(
        "UPDATE deliveries SET attempts = attempts + 1, next_at = ?, error = ?, state = ?,"
        " lease_until = 0, owner = NULL WHERE dest = ? AND seq = ?",
        (next_at, error[:500], DEAD if dead else PENDING, dest, int(ref)),
    )


def replay_dead(conn: sqlite3.Connection, now: float, dest: str | None) -> int:
    where, args = ("state = 2", ()) if dest is None else ("state = 2 AND dest = ?", (dest,))
    cur = conn.execute(
        "UPDATE deliveries SET state = 0, attempts = 0, next_at = 0, queued_at = ?, error = NULL,"
        f" lease_until = 0, owner = NULL WHERE {where}",
        (now, *args),
    )
    return cur.rowcount


def stats(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    names = {PENDING: "pending", DELIVERED: "delivered", DEAD: "dead"}
    out: dict[str, dict[str, int]] = {}
    for dest, state, count in conn.execute(
        "SELECT dest, state, count(*) FROM deliveries GROUP BY dest, state"
    ):
        out.setdefault(dest, {"pending": 0, "delivered": 0, "dead": 0})[names[state]] = count
    return out


def oldest(conn: sqlite3.Connection) -> dict[str, float]:
    rows = conn.execute(
        "SELECT dest, min(queued_at) FROM deliveries WHERE state = ? GROUP BY dest", (PENDING,)
    )
    return {dest: queued_at for dest, queued_at in rows}


def recent(conn: sqlite3.Connection, n: int, after: str | None) -> list[tuple[str, Event]]:
    if after:
        rows = conn.execute(
            "SELECT seq, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (int(after), n)
        ).fetchall()
    else:
        rows = conn.execute(
            "SELECT seq, body FROM events ORDER BY seq DESC LIMIT ?", (n,)
        ).fetchall()[::-1]
    return [(str(seq), Event.from_json(body)) for seq, body in rows]


class SqliteOutbox:
    """The outbox functions run on the shared store: writes (leases included) group-committed."""

    def __init__(self, store: Store, owner: str, lease_seconds: float) -> None:
        self.store = store
        self.owner = owner
        self.lease_seconds = lease_seconds

    async def append(
        self,
        events: Sequence[Event],
        routes: Sequence[Sequence[str]],
        now: float,
        hold_until: float,
    ) -> None:
        await self.store.write(
            partial(append, events=events, routes=routes, now=now, hold_until=hold_until),
            inline=True,
        )

    async def release(self, events: Sequence[Event]) -> None:
        await self.store.write(partial(release, events=events))

    async def lease(
        self,
        destination: str,
        now: float,
        *,
        limit: int,
        per_key: int,
        max_keys: int | None,
        busy: Collection[str],
    ) -> Leased:
        """Scan on the reader, then claim on the writer: the scan never holds up the appends
        a shopper's answer waits for."""
        groups, next_due = await self.store.read(
            partial(
                candidates,
                dest=destination,
                now=now,
                busy=tuple(busy),
                owner=self.owner,
                limit=limit,
                per_key=per_key,
                max_keys=max_keys,
            )
        )
        if groups:
            groups = await self.store.write(
                partial(
                    claim,
                    dest=destination,
                    groups=groups,
                    now=now,
                    owner=self.owner,
                    lease_for=self.lease_seconds,
                )
            )
        return Leased(groups, next_due)

    async def ack(self, destination: str, deliveries: Sequence[Delivery]) -> None:
        await self.store.write(partial(ack, dest=destination, refs=[d.ref for d in deliveries]))

    async def retry(
        self, destination: str, delivery: Delivery, next_at: float, error: str, dead: bool
    ) -> None:
        await self.store.write(
            partial(
                retry, dest=destination, ref=delivery.ref, next_at=next_at, error=error, dead=dead
            )
        )

    async def replay_dead(self, destination: str | None = None) -> int:
        return await self.store.write(partial(replay_dead, now=time.time(), dest=destination))

    async def stats(self) -> dict[str, dict[str, int]]:
        return await self.store.read(stats)

    async def oldest(self) -> dict[str, float]:
        return await self.store.read(oldest)

    async def recent(self, n: int, after: str | None = None) -> list[tuple[str, Event]]:
        return await self.store.read(partial(recent, n=n, after=after))
