"""The Redis backend: one client shared by every store, keys under `StateConfig.prefix`.

Short socket timeouts (`StateConfig.timeout`) and a single retry make every call fail with a
Redis error within about a second
instead of hanging while Redis is down: the outbox falls back to its local spool, the other
stores' callers fail open.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from state import ConsoleState, State, StateConfig
from state.redis.accounts import RedisAccounts
from state.redis.attempts import RedisAttempts
from state.redis.audit import RedisAuditLog
from state.redis.browserids import RedisBrowserIds
from state.redis.carts import RedisCarts
from state.redis.drafts import RedisDrafts
from state.redis.exposures import RedisExposures
from state.redis.outbox import open_outbox
from state.redis.profiles import RedisProfiles
from state.redis.secrets import RedisSecrets
from state.redis.shoppers import RedisShoppers
from state.redis.versions import RedisTableVersions


def connect(config: StateConfig) -> Redis:
    return Redis.from_url(
        config.location,
        decode_responses=False,
        socket_timeout=config.timeout,
        socket_connect_timeout=config.timeout,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
    )


async def open_redis(config: StateConfig) -> State:
    client = connect(config)
    outbox = await open_outbox(client, config)
    exposures = RedisExposures(client, config.prefix, outbox.spool)
    await exposures.start()

    async def closer() -> None:
        await exposures.close()
        await outbox.close()
        await client.aclose()

    async def checker() -> dict[str, str]:
        checks: dict[str, str] = {}
        try:
            await client.ping()
            checks["redis"] = "ok"
        except (RedisError, OSError) as error:
            checks["redis"] = (
                f"degraded: unreachable ({type(error).__name__}); events spool locally"
            )
        waiting = outbox.spooled()
        checks["outbox"] = f"degraded: {waiting} events spooled" if waiting else "ok"
        unmoved = exposures.spooled()
        checks["exposures"] = f"degraded: {unmoved} exposures spooled" if unmoved else "ok"
        return checks

    return State(
        backend="redis",
        outbox=outbox,
        profiles=RedisProfiles(client, config.prefix),
        browser_ids=RedisBrowserIds(client, config.prefix),
        carts=RedisCarts(client, config.prefix),
        versions=RedisTableVersions(client, config.prefix),
        exposures=exposures,
        console=ConsoleState(
            drafts=RedisDrafts(client, config.prefix),
            accounts=RedisAccounts(client, config.prefix),
            shoppers=RedisShoppers(client, config.prefix),
            audit=RedisAuditLog(client, config.prefix),
            attempts=RedisAttempts(client, config.prefix),
            secrets=RedisSecrets(client, config.prefix),
        ),
        closer=closer,
        checker=checker,
    )
