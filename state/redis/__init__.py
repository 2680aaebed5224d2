"""The Redis backend: one client shared by every store, keys under `StateConfig.prefix`.

Short socket timeouts make every call fail with a Redis error instead of hanging while Redis is
down; callers fail open.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import RedisError

from state import State, StateConfig
from state.redis.browserids import RedisBrowserIds
from state.redis.carts import RedisCarts
from state.redis.exposures import RedisExposures
from state.redis.profiles import RedisProfiles
from state.redis.versions import RedisTableVersions


def connect(config: StateConfig) -> Redis:
    return Redis.from_url(config.location, socket_timeout=2, socket_connect_timeout=2)


async def open_redis(config: StateConfig) -> State:
    # PLACEHOLDER until the redis-outbox branch merges: its opener's name and arguments may differ.
    from state.redis.outbox import open_outbox

    client = connect(config)
    outbox = await open_outbox(client, config)

    async def checker() -> dict[str, str]:
        try:
            await client.ping()
        except (RedisError, OSError) as error:
            return {"redis": f"unavailable: {error}"}
        return {"redis": "ok"}

    return State(
        backend="redis",
        outbox=outbox,
        profiles=RedisProfiles(client, config.prefix),
        browser_ids=RedisBrowserIds(client, config.prefix),
        carts=RedisCarts(client, config.prefix),
        versions=RedisTableVersions(client, config.prefix),
        exposures=RedisExposures(client, config.prefix),
        closer=client.aclose,
        checker=checker,
    )
