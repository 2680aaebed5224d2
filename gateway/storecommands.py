"""`ocgateway store migrate`: move a SQLite store to Redis (or to another SQLite file).

Run it with the gateways stopped (or drained: `ocgateway events stats` shows 0 pending): it
copies a snapshot of the source, and a target some gateway already writes is refused.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from gateway.settings import Settings
from state import State, StateConfig
from state.migrate import MigrationError, migrate, occupied, unhealthy
from state.sqlite import export

OpenStore = Callable[[Settings], Awaitable[State]]
SETTLE_SECONDS = 30.0  # the most to wait for the target to hold every write (not a spool)


def register(subparsers: Any, open_store: OpenStore) -> None:
    """Add the `store` command group; each command sets `func(args, settings)`."""
    store = subparsers.add_parser("store", help="the state store: migrate it to another backend")
    commands = store.add_subparsers(dest="store_command", required=True)
    move = commands.add_parser(
        "migrate",
        help="copy a SQLite store into Redis (stop the gateways first)",
        description="Copy table versions, profiles, browser ids, carts, exposures, conversions "
        "and undelivered events (pending stay pending, dead stay dead) from a SQLite store.",
    )
    move.add_argument("--from", dest="source", help="the SQLite file (default: OCGW_STORE)")
    move.add_argument("--to", dest="target", required=True, help="redis://… URL or SQLite file")
    move.add_argument("--dry-run", action="store_true", help="count what would be copied")
    move.add_argument(
        "--force", action="store_true", help="copy into a target that already holds state"
    )
    move.set_defaults(func=lambda args, settings: _migrate(args, settings, open_store))


def _migrate(args: argparse.Namespace, settings: Settings, open_store: OpenStore) -> int:
    source = args.source or settings.store
    try:
        return asyncio.run(_run(args, source, settings, open_store))
    except (MigrationError, FileNotFoundError) as exc:
        print(f"ocgateway store migrate: {exc}", file=sys.stderr)
        return 1


async def _run(
    args: argparse.Namespace, source: str, settings: Settings, open_store: OpenStore
) -> int:
    if StateConfig(source).is_redis:
        raise MigrationError("the source must be a SQLite file (Redis → SQLite is not supported)")
    if not StateConfig(args.target).is_redis and Path(args.target).resolve() == (
        Path(source).resolve()
    ):
        raise MigrationError("the source and the target are the same file")
    conn = export.open_snapshot(Path(source))
    try:
        print(f"reading a snapshot of {source}", flush=True)
        target = await open_store(settings.model_copy(update={"store": args.target}))
        try:
            return await _copy(args, conn, target, 3 * settings.lease_seconds + 5)
        finally:
            await target.close()
    finally:
        conn.close()


async def _copy(
    args: argparse.Namespace, conn: sqlite3.Connection, target: State, dead_timeout: float
) -> int:
    where = redacted(args.target)
    problems = await unhealthy(target)
    if problems:
        raise MigrationError(f"{where} is not healthy: {problems}")
    held = await occupied(target)
    refusal = (
        f"{where} already holds {'; '.join(held)}: a previous migration, or a live gateway "
        "writing it. Stop the gateways; --force copies anyway (see --help)."
    )
    if args.dry_run:
        for kind, count in export.counts(conn).items():
            print(f"{kind}: {count} to copy")
        print(f"dry run: nothing written to {where}")
        if held and not args.force:
            print(f"a real run would refuse: {refusal}")
        return 0
    if held and not args.force:
        raise MigrationError(refusal)
    started = time.monotonic()
    summary = await migrate(
        conn, target, lambda line: print(line, flush=True), dead_timeout=dead_timeout
    )
    await _settled(target)
    total = sum(summary.copied.values())
    print(
        f"copied {total} items into {where} in {time.monotonic() - started:.1f} s;"
        f" start the gateways with OCGW_STORE={where}"
    )
    return 0


async def _settled(target: State) -> None:
    """Writes the target spooled locally (Redis went away mid-copy) must reach it before the
    process ends, or they would wait in this machine's spool for the next gateway here."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while problems := await unhealthy(target):
        if time.monotonic() > deadline:
            raise MigrationError(
                f"the target did not take every write: {problems}; what is spooled moves to"
                " Redis when a gateway with the same OCGW_SPOOL starts on this machine"
            )
        await asyncio.sleep(0.5)


def redacted(location: str) -> str:
    """A store location safe to print: a Redis URL's password is masked."""
    parts = urlsplit(location)
    if not parts.password:
        return location
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
