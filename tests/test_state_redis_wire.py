"""The outbox append's own Redis connection (`state/redis/wire.py`): what it must do like
redis-py (set-up from the same URL, errors as redis-py errors) and what it adds (pipelining in
order, scripts loaded on demand, a fresh connection after any failure)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import redis
from redis.asyncio import Redis
from redis.exceptions import ConnectionError, ResponseError, TimeoutError

from state.redis.wire import Wire, encode
from tests.redisserver import EPHEMERAL, own_redis

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def wired(url: str, timeout: float) -> AsyncIterator[tuple[Redis, Wire]]:
    """A redis-py client for `url` and a Wire set up from it, both closed afterwards."""
    client = Redis.from_url(url)
    wire = Wire(client, timeout=timeout)
    try:
        yield client, wire
    finally:
        await wire.close()
        await client.aclose()


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


def test_commands_are_resp_arrays_of_bulk_strings() -> None:
    assert encode(("SET", b"k\r\n", 7, 1.5)) == (
        b"*4\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$1\r\n7\r\n$3\r\n1.5\r\n"
    )


async def test_replies_come_back_in_order_however_many_are_in_flight(
    client: Redis, redis_prefix: str
) -> None:
    wire = Wire(client, timeout=2)
    key = f"{redis_prefix}n"
    try:
        replies = await asyncio.gather(*(wire.call("INCR", key) for _ in range(200)))
        assert replies == list(range(1, 201))
        assert await wire.call("GET", key) == b"200"
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await wire.call("LPUSH", key, "x")
        assert await wire.call("PING") == b"PONG"  # an error reply leaves the connection usable
    finally:
        await wire.close()


async def test_a_script_redis_does_not_know_is_loaded_and_run(
    client: Redis, redis_prefix: str
) -> None:
    script = client.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    wire = Wire(client, timeout=2)
    try:
        await client.script_flush()
        assert await wire.run(script, [f"{redis_prefix}s"], [5]) == 5
        assert await wire.run(script, [f"{redis_prefix}s"], [5]) == 10
    finally:
        await wire.close()


async def test_a_lost_connection_fails_what_is_in_flight_and_the_next_call_reconnects(
    client: Redis, redis_prefix: str
) -> None:
    wire = Wire(client, timeout=5)
    try:
        me = await wire.call("CLIENT", "ID")
        waiting = asyncio.ensure_future(wire.call("BLPOP", f"{redis_prefix}never", 4))
        await asyncio.sleep(0.05)
        await client.client_kill_filter(_id=str(me))
        with pytest.raises(ConnectionError):
            await waiting
        assert await wire.call("PING") == b"PONG"
        assert await wire.call("CLIENT", "ID") != me
    finally:
        await wire.close()


async def test_no_answer_within_the_timeout_is_an_outage_and_drops_the_connection() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        port = silent.getsockname()[1]
        async with wired(f"redis://127.0.0.1:{port}/0", timeout=0.2) as (_, wire):
            with pytest.raises(TimeoutError):
                await wire.call("PING")
            assert isinstance(TimeoutError("x"), redis.RedisError)  # the outbox spools on it
            with pytest.raises(TimeoutError):  # a new connection, timed out again
                await wire.call("PING")


async def test_nothing_listening_is_a_connection_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    async with wired(f"redis://127.0.0.1:{port}/0", timeout=1) as (_, wire):
        with pytest.raises(ConnectionError):
            await wire.call("PING")


async def test_password_database_and_unix_socket_come_from_the_url(tmp_path: Path) -> None:
    sock = tmp_path / "r.sock"
    options = (*EPHEMERAL, "--unixsocket", str(sock), "--unixsocketperm", "700")
    with own_redis(tmp_path / "redis", *options, password="s3cret") as server:
        for url in (
            server.url.replace("/0", "/3"),
            f"unix://:s3cret@{sock}?db=3",
        ):
            async with wired(url, timeout=2) as (client, wire):
                assert await wire.call("SET", "where", url) == b"OK"
                assert await client.get("where") == url.encode()  # the same database
        async with wired(server.url.replace("s3cret", "wrong"), timeout=2) as (_, wire):
            with pytest.raises(ResponseError):
                await wire.call("PING")


def test_it_runs_on_uvloop_as_the_gateway_does(redis_url: str) -> None:
    """uvloop's transports are not asyncio.Transport subclasses (the tests above run on asyncio)."""
    import uvloop

    async def main() -> object:
        async with wired(redis_url, timeout=2) as (_, wire):
            return await asyncio.gather(wire.call("PING"), wire.call("ECHO", "x"))

    assert uvloop.run(main()) == [b"PONG", b"x"]
