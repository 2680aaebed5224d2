"""Everything a SQLite store holds, read back as state values, for `ocgateway store migrate`.

The state interfaces answer per visitor or per version; a migration needs every row. These
readers sit beside the schema they read (the modules of this package), run on one connection
inside one read transaction (a consistent snapshot of the file), and page through large tables,
so a million-row outbox costs memory for one page at a time.
"""

from __future__ import annotations

import heapq
import itertools
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any

import orjson

from state.accounts import Account
from state.audit import AuditEntry
from state.drafts import Draft
from state.events import Event
from state.exposures import Exposure
from state.profiles import Profile
from state.shoppers import SavedShopper
from state.sqlite.outbox import DEAD, PENDING
from state.sqlite.store import connect
from state.versions import Version

PAGE = 1000


@dataclass(frozen=True, slots=True)
class Cart:
    visitor: str
    order_id: str | None
    lines: list[dict[str, Any]]  # in the order they were added
    anonymous: bool
    browser_id: str | None
    updated_at: float
    reported: bool  # its current version already had its abandoned event


@dataclass(frozen=True, slots=True)
class Conversion:
    visitor: str
    order_id: str
    total: float
    at: float


@dataclass(frozen=True, slots=True)
class Dead:
    queued_at: float
    attempts: int
    error: str


@dataclass(frozen=True, slots=True)
class Undelivered:
    """One event with the destinations it still owes, pending or dead."""

    event: Event
    pending: dict[str, float]  # destination -> queued_at
    dead: dict[str, Dead]


def open_snapshot(path: Path) -> sqlite3.Connection:
    """A connection reading one consistent snapshot of an existing store file."""
    if not path.is_file():
        raise FileNotFoundError(f"no SQLite store at {path}")
    conn = connect(path)
    conn.execute("BEGIN")
    return conn


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Rows per kind, as the migration reports them."""

    def one(sql: str) -> int:
        return int(conn.execute(sql).fetchone()[0])

    return {
        "versions": one("SELECT count(*) FROM decision_versions"),
        "profiles": one("SELECT count(*) FROM profiles"),
        "browser ids": one("SELECT count(*) FROM browser_ids"),
        "carts": one("SELECT count(*) FROM carts WHERE lines != '{}'"),
        "exposures": one("SELECT count(*) FROM decision_exposures"),
        "conversions": one("SELECT count(*) FROM decision_conversions"),
        "pending deliveries": one(f"SELECT count(*) FROM deliveries WHERE state = {PENDING}"),
        "dead deliveries": one(f"SELECT count(*) FROM deliveries WHERE state = {DEAD}"),
        **{
            kind: one(f"SELECT count(*) FROM {table}") if _has(conn, table) else 0
            for kind, table in _CONSOLE_TABLES.items()
        },
    }


_CONSOLE_TABLES = {
    "admin accounts": "ui_accounts",
    "saved shoppers": "ui_shoppers",
    "drafts": "ui_drafts",
    "audit entries": "ui_audit",
}


def _paged(conn: sqlite3.Connection, sql: str, key: str) -> Iterator[tuple[Any, ...]]:
    """Rows of `sql` (which selects `key` first and has a `{after}` filter) in key order."""
    after: Any = None
    while True:
        where = "" if after is None else f"WHERE {key} > ?"
        rows = conn.execute(
            sql.format(after=where) + f" ORDER BY {key} LIMIT {PAGE}",
            () if after is None else (after,),
        ).fetchall()
        yield from rows
        if len(rows) < PAGE:
            return
        after = rows[-1][0]


def versions(conn: sqlite3.Connection) -> Iterator[Version]:
    """Oldest first: the order a target numbers them in."""
    for row in _paged(
        conn,
        "SELECT version, created_at, author, comment, source, diff FROM decision_versions {after}",
        "version",
    ):
        yield Version(*row)


def profiles(conn: sqlite3.Connection) -> Iterator[Profile]:
    for _, body in _paged(conn, "SELECT visitor, body FROM profiles {after}", "visitor"):
        yield Profile.from_json(body)


def browser_ids(conn: sqlite3.Connection) -> Iterator[tuple[str, str]]:
    yield from _paged(conn, "SELECT visitor, browser_id FROM browser_ids {after}", "visitor")


def carts(conn: sqlite3.Connection) -> Iterator[Cart]:
    """Carts with lines (an emptied cart has nothing to abandon)."""
    sql = (
        "SELECT visitor, order_id, lines, anonymous, browser_id, updated_at, reported >= version"
        " FROM carts {after}"
    )
    for visitor, order_id, lines, anonymous, browser_id, at, reported in _paged(
        conn, sql, "visitor"
    ):
        by_id: dict[str, dict[str, Any]] = orjson.loads(lines)
        if by_id:
            yield Cart(
                visitor,
                order_id,
                list(by_id.values()),
                bool(anonymous),
                browser_id,
                at,
                bool(reported),
            )


def exposures(conn: sqlite3.Connection) -> Iterator[Exposure]:
    sql = (
        "SELECT rowid, at, visitor_id, table_id, rule_id, variant, version, route"
        " FROM decision_exposures {after}"
    )
    for _, at, visitor, table, rule, variant, version, route in _paged(conn, sql, "rowid"):
        yield Exposure(visitor, table, rule, variant, version, route, at)


def conversions(conn: sqlite3.Connection) -> Iterator[Conversion]:
    sql = "SELECT order_id, visitor_id, total, submitted_at FROM decision_conversions {after}"
    for order_id, visitor, total, at in _paged(conn, sql, "order_id"):
        yield Conversion(visitor, order_id, total, at)


def accounts(conn: sqlite3.Connection) -> Iterator[Account]:
    """The admin UI's accounts (password hashes as they are: nothing to re-enter)."""
    if _has(conn, "ui_accounts"):
        sql = "SELECT username, role, password_hash, created_at FROM ui_accounts ORDER BY username"
        for row in conn.execute(sql):
            yield Account(*row)


def drafts(conn: sqlite3.Connection) -> Iterator[Draft]:
    if _has(conn, "ui_drafts"):
        for (body,) in conn.execute("SELECT body FROM ui_drafts ORDER BY updated_at"):
            yield Draft.from_json(body)


def saved_shoppers(conn: sqlite3.Connection) -> Iterator[SavedShopper]:
    if _has(conn, "ui_shoppers"):
        for (body,) in conn.execute("SELECT body FROM ui_shoppers ORDER BY name"):
            yield SavedShopper.from_json(body)


def audit(conn: sqlite3.Connection) -> Iterator[AuditEntry]:
    """Oldest first, as they were appended."""
    if _has(conn, "ui_audit"):
        sql = "SELECT at, actor, action, target, detail FROM ui_audit ORDER BY seq"
        for row in conn.execute(sql):
            yield AuditEntry(*row)


def _has(conn: sqlite3.Connection, table: str) -> bool:
    """Whether the file has the table (a file from before the admin UI has no ui_ tables)."""
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
    return found.fetchone() is not None


def undelivered(conn: sqlite3.Connection) -> Iterator[Undelivered]:
    """Events with a pending or dead delivery, in record order (per-visitor order included).
    Each destination's rows are walked along the primary key and merged by sequence number. An
    event keeps the ordering key it was recorded with, even if its body learnt a visitor since."""
    dests = [dest for (dest,) in conn.execute("SELECT DISTINCT dest FROM deliveries")]
    rows = heapq.merge(*(_owed(conn, dest) for dest in dests))
    for seq, group in itertools.groupby(rows, key=itemgetter(0)):
        (body,) = conn.execute("SELECT body FROM events WHERE seq = ?", (seq,)).fetchone()
        owed = Undelivered(Event.from_json(body), {}, {})
        for _, dest, okey, state, queued_at, attempts, error in group:
            owed.event.key = okey
            if state == PENDING:
                owed.pending[dest] = queued_at
            else:
                owed.dead[dest] = Dead(queued_at, attempts, error or "")
        yield owed


def _owed(conn: sqlite3.Connection, dest: str) -> Iterator[tuple[Any, ...]]:
    after = 0
    while True:
        rows = conn.execute(
            "SELECT seq, dest, okey, state, queued_at, attempts, error FROM deliveries"
            f" WHERE dest = ? AND seq > ? AND state IN ({PENDING}, {DEAD}) ORDER BY seq"
            f" LIMIT {PAGE}",
            (dest, after),
        ).fetchall()
        yield from rows
        if len(rows) < PAGE:
            return
        after = rows[-1][0]
