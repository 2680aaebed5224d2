"""PLACEHOLDER until the Redis backend is assembled: only the outbox is real here.

`open_redis` will open every Redis store; this stand-in opens the client and the outbox so the
outbox contract tests run. The client settings matter to the outbox: short timeouts and a single
retry, so an outage is noticed in seconds and `append` falls back to the spool quickly.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from state import State, StateConfig
from state.redis.outbox import open_outbox


def connect(config: StateConfig) -> Redis:
    return Redis.from_url(
        config.location,
        decode_responses=False,
        socket_timeout=2.0,
        socket_connect_timeout=2.0,
        retry=Retry(NoBackoff(), 1),
    )


async def open_redis(config: StateConfig) -> State:
    client = connect(config)
    outbox = await open_outbox(client, config, None)

    async def closer() -> None:
        await outbox.close()
        await client.aclose()

    async def checker() -> dict[str, str]:
        waiting = outbox.spooled()
        return {"outbox": f"degraded: {waiting} events spooled" if waiting else "ok"}

    missing = None  # the other stores land with the assembled backend
    return State("redis", outbox, missing, missing, missing, missing, missing, closer, checker)  # type: ignore[arg-type]
