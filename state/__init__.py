"""The state every replica shares: one small interface per job, two backends behind them.

`tracking` and `decisions` use only these interfaces (and the kernel types beside them); the
composition root opens a backend with `open_state` and hands each service the parts it needs.
A file path keeps everything in one SQLite file (the embedded default: one machine, any number of
processes); `redis://` or `rediss://` puts it all on Redis for replicas on many machines.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from state.accounts import Accounts
from state.attempts import Attempts
from state.audit import AuditLog
from state.browserids import BrowserIds
from state.carts import Carts
from state.drafts import Drafts
from state.exposures import Exposures
from state.outbox import Outbox
from state.profiles import Profiles
from state.secrets import Secrets
from state.shoppers import Shoppers
from state.versions import TableVersions


def replica_name() -> str:
    """Unique per process and start: leases held by a dead process are never mistaken for ours."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, slots=True)
class StateConfig:
    location: str  # a SQLite file path, or redis://host:port/db (rediss:// for TLS)
    prefix: str = "ocgw:"  # Redis key prefix: several gateways may share one Redis
    spool: Path = Path("ocgateway-spool.db")  # Redis backend: events wait here while Redis is down
    lease_seconds: float = 30.0  # a delivery leased by a dead process is taken over after this
    partitions: int = 16  # Redis backend: outbox streams; each is consumed by one replica at a time
    timeout: float = 0.5  # Redis backend: seconds a command may take before Redis counts as down
    replica: str = field(default_factory=replica_name)

    @property
    def is_redis(self) -> bool:
        return self.location.startswith(("redis://", "rediss://", "unix://"))


@dataclass(frozen=True, slots=True)
class ConsoleState:
    """What the admin UI keeps: drafts (with their approvals), accounts, saved test shoppers,
    the audit log, sign-in failure counts and the session signing key."""

    drafts: Drafts
    accounts: Accounts
    shoppers: Shoppers
    audit: AuditLog
    attempts: Attempts
    secrets: Secrets


@dataclass(slots=True)
class State:
    backend: str  # "sqlite" or "redis"
    outbox: Outbox
    profiles: Profiles
    browser_ids: BrowserIds
    carts: Carts
    versions: TableVersions
    exposures: Exposures
    console: ConsoleState
    closer: Callable[[], Awaitable[None]]
    checker: Callable[[], Awaitable[dict[str, str]]]

    async def close(self) -> None:
        await self.closer()

    async def health(self) -> dict[str, str]:
        """Check name -> "ok" or what is wrong ("degraded: …" while the store still serves)."""
        return await self.checker()


async def open_state(config: StateConfig) -> State:
    """Open the backend `config.location` names; the Redis client is imported only when used."""
    if config.is_redis:
        from state.redis import open_redis

        return await open_redis(config)
    from state.sqlite import open_sqlite

    return await open_sqlite(config)
