"""The embedded backend: every store in one SQLite file (WAL), shared by the processes of one
machine. The file survives a killed process; it is not shared across machines."""

from __future__ import annotations

import asyncio
from pathlib import Path

from state import ConsoleState, State, StateConfig
from state.sqlite import (
    accounts,
    attempts,
    audit,
    browserids,
    carts,
    drafts,
    exposures,
    outbox,
    profiles,
    secrets,
    shoppers,
    versions,
)
from state.sqlite.accounts import SqliteAccounts
from state.sqlite.attempts import SqliteAttempts
from state.sqlite.audit import SqliteAuditLog
from state.sqlite.browserids import SqliteBrowserIds
from state.sqlite.carts import SqliteCarts
from state.sqlite.drafts import SqliteDrafts
from state.sqlite.exposures import SqliteExposures
from state.sqlite.outbox import SqliteOutbox
from state.sqlite.profiles import SqliteProfiles
from state.sqlite.secrets import SqliteSecrets
from state.sqlite.shoppers import SqliteShoppers
from state.sqlite.store import Store
from state.sqlite.versions import SqliteVersions

SCHEMA = "".join(
    m.SCHEMA
    for m in (outbox, profiles, browserids, carts, versions, exposures)
    + (drafts, accounts, shoppers, audit, attempts, secrets)
)


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
        console=ConsoleState(
            drafts=SqliteDrafts(store),
            accounts=SqliteAccounts(store),
            shoppers=SqliteShoppers(store),
            audit=SqliteAuditLog(store),
            attempts=SqliteAttempts(store),
            secrets=SqliteSecrets(store),
        ),
        closer=close,
        checker=check,
    )
