"""Every published version of the decision tables, and exposures, in the gateway's SQLite store.

The store is the source of truth for what is live: the newest version wins. Versions are never
changed or deleted; a rollback publishes an old source again as a new version. Calls are blocking
and short: the service runs them in a thread (asyncio.to_thread).
"""

from __future__ import annotations

import difflib
import hashlib
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS decision_versions (
    version INTEGER PRIMARY KEY,
    created_at REAL NOT NULL,
    author TEXT NOT NULL,
    comment TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL,
    source_hash TEXT NOT NULL,
    diff TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS decision_exposures (
    at REAL NOT NULL,
    visitor_id TEXT NOT NULL,
    table_id TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    variant TEXT NOT NULL,
    version INTEGER NOT NULL,
    route TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decision_exposures_by_rule ON decision_exposures (table_id, rule_id, variant);
"""

MAX_VERSION = 2**63 - 1  # SQLite's largest INTEGER

# Conversions come from submitted orders: the tracker defines `decision_orders` (visitor_id,
# order_id, total, submitted_at) as a view over its outbox. Without a tracker there are none.
ORDERS_SOURCE = "decision_orders"
NO_ORDERS = (
    "(SELECT NULL AS visitor_id, NULL AS order_id, 0.0 AS total, 0.0 AS submitted_at WHERE 0)"
)


@dataclass(frozen=True, slots=True)
class Version:
    version: int
    created_at: float
    author: str
    comment: str
    source: str
    diff: str

    def summary(self) -> dict[str, object]:
        return {
            "version": self.version,
            "created_at": self.created_at,
            "author": self.author,
            "comment": self.comment,
        }


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def unified_diff(old: str, new: str, old_name: str, new_name: str) -> str:
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), old_name, new_name
        )
    )


class VersionStore:
    """SQLite-backed versions and exposures; one short connection per call, safe from any thread."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=10)
        conn.row_factory = sqlite3.Row
        return conn

    def open(self) -> None:
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)
        conn.close()

    def has(self, name: str) -> bool:
        """Whether a table or view of that name exists (the tracker's `decision_orders`)."""
        return bool(self.query("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)))

    def _version(self, row: sqlite3.Row | None) -> Version | None:
        if row is None:
            return None
        return Version(
            row["version"],
            row["created_at"],
            row["author"],
            row["comment"],
            row["source"],
            row["diff"],
        )

    def latest(self) -> Version | None:
        conn = self._connect()
        try:
            return self._version(
                conn.execute(
                    "SELECT * FROM decision_versions ORDER BY version DESC LIMIT 1"
                ).fetchone()
            )
        finally:
            conn.close()

    def get(self, version: int) -> Version | None:
        """None for a number no version can have: SQLite integers are 64-bit, and binding a
        larger Python int raises OverflowError."""
        if not 1 <= version <= MAX_VERSION:
            return None
        conn = self._connect()
        try:
            return self._version(
                conn.execute(
                    "SELECT * FROM decision_versions WHERE version = ?", (version,)
                ).fetchone()
            )
        finally:
            conn.close()

    def versions(self) -> list[Version]:
        """Newest first, without sources (they can be large)."""
        conn = self._connect()
        try:
            rows = conn.execute(
                "SELECT version, created_at, author, comment, '' AS source, '' AS diff "
                "FROM decision_versions ORDER BY version DESC"
            ).fetchall()
            return [v for v in map(self._version, rows) if v is not None]
        finally:
            conn.close()

    def latest_number(self) -> int | None:
        """The newest version's number: a cheap poll for versions other processes published."""
        conn = self._connect()
        try:
            return conn.execute("SELECT MAX(version) FROM decision_versions").fetchone()[0]
        finally:
            conn.close()

    def add(
        self,
        source: str,
        author: str,
        comment: str = "",
        now: float | None = None,
        *,
        unless_repeated: bool = False,
    ) -> Version | None:
        """Append a version; its diff is against the version before it.

        Runs under SQLite's write lock (BEGIN IMMEDIATE), so workers sharing the store number
        versions without gaps or clashes. With `unless_repeated`, nothing is added (None) when this
        author's newest version has the same source: a file edit seen by several workers, or again
        after a restart, is imported once."""
        now = time.time() if now is None else now
        conn = self._connect()
        conn.isolation_level = None  # explicit transactions
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if unless_repeated:
                    row = conn.execute(
                        "SELECT source_hash FROM decision_versions WHERE author = ? "
                        "ORDER BY version DESC LIMIT 1",
                        (author,),
                    ).fetchone()
                    if row is not None and row[0] == source_hash(source):
                        conn.execute("ROLLBACK")
                        return None
                prev = conn.execute(
                    "SELECT version, source FROM decision_versions ORDER BY version DESC LIMIT 1"
                ).fetchone()
                number = (prev["version"] + 1) if prev else 1
                old = prev["source"] if prev else ""
                old_name = f"v{prev['version']}" if prev else "empty"
                diff = unified_diff(old, source, old_name, f"v{number}")
                conn.execute(
                    "INSERT INTO decision_versions VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (number, now, author, comment, source, source_hash(source), diff),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return Version(number, now, author, comment, source, diff)
        finally:
            conn.close()

    def add_exposures(self, rows: Iterable[tuple[float, str, str, str, str, int, str]]) -> None:
        conn = self._connect()
        try:
            with conn:
                conn.executemany(
                    "INSERT INTO decision_exposures VALUES (?, ?, ?, ?, ?, ?, ?)", rows
                )
        finally:
            conn.close()

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        conn = self._connect()
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()
