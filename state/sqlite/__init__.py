"""The embedded backend: every store in one SQLite file (WAL), shared by the processes of one
machine. The file survives a killed process; it is not shared across machines."""

from __future__ import annotations

import asyncio
from pathlib import Path

from state import State, StateConfig
from state.sqlite import browserids, carts, exposures, outbox, profiles, versions
from state.sqlite.browserids import SqliteBrowserIds
from state.sqlite.carts import SqliteCarts
from state.sqlite.exposures import SqliteExposures
from state.sqlite.outbox import SqliteOutbox
from state.sqlite.profiles import SqliteProfiles
from state.sqlite.store import Store
from state.sqlite.versions import SqliteVersions

SCHEMA = "".join(m.SCHEMA for m in (outbox, profiles, browserids, carts, versions, exposures))


async def open_sqlite(config: StateConfig) -> State:
    store = Store(Path(config.location), SCHEMA)
    await asyncio.to_thread(store.open)

    async def check() -> dict[str, str]:
        try:
            await store.read(lambda conn: conn.execute("SELECT 1").fetchone())
        except Exception as exc:  # noqa: BLE001 - reported, not raised: this is a health check
            return {"store": f"{type(exc).__name__}: {exc}"}
        return {"store": "ok"}

    async def close() -> None:
        await asyncio.to_thread(store.close)

    return State(
        backend="sqlite",
        outbox=SqliteOutbox(store, config.replica, config.lease_seconds),
        profiles=SqliteProfiles(store),
        browser_ids=SqliteBrowserIds(store),
        carts=SqliteCarts(store),
        versions=SqliteVersions(store),
        exposures=SqliteExposures(store),
        closer=close,
        checker=check,
    )
