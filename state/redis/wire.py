"""A lean Redis connection for the one command a shopper waits on: the outbox append.

A tracked call answers only once its events are in Redis, so at one connection the shopper waits
for that round trip and for what the client spends around it. redis-py's asyncio client spends
about 100 µs of CPU per script call here (pool, retry wrapper, command packing, parser layers);
this connection spends about 40, most of it the system calls, and the call returns about 50 µs
sooner (a loop of script calls on loopback, 2026-12-07; in the outbox, an append went from 155
to 85 µs of CPU). Everything else keeps using redis-py.

It speaks RESP2 over one transport (TCP, TLS or a Unix socket, set up from the redis-py client's
own connection settings, so the URL means the same), parses replies with hiredis, and pipelines:
commands sent while others are in flight are answered in order. Any failure (connection lost,
no answer within the timeout) fails every command in flight with a redis-py error, so callers
treat it as an outage like any other, and drops the connection; the next command reconnects.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import cast

import hiredis
from redis import exceptions as errors
from redis.asyncio import Redis
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection
from redis.commands.core import AsyncScript

Arg = bytes | str | int | float


def encode(args: tuple[Arg, ...]) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


class _Protocol(asyncio.Protocol):
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.reader = hiredis.Reader(replyError=errors.ResponseError)
        self.waiting: deque[tuple[asyncio.Future[object], asyncio.TimerHandle]] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while self.waiting:
            reply = self.reader.gets()
            if reply is False:
                return
            future, timer = self.waiting.popleft()
            timer.cancel()
            if not future.done():
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(errors.ConnectionError(f"Redis closed the connection ({exc or 'EOF'})"))

    def send(self, command: bytes) -> asyncio.Future[object]:
        if self.lost is not None or self.transport is None:
            raise self.lost or errors.ConnectionError("not connected")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[object] = loop.create_future()
        timer = loop.call_later(self.timeout, self._timed_out)
        self.transport.write(command)
        self.waiting.append((future, timer))
        return future

    def _timed_out(self) -> None:
        # Replies come in order, so the connection is of no use once one is late.
        self.fail(errors.TimeoutError(f"no answer from Redis within {self.timeout} s"))

    def fail(self, error: Exception) -> None:
        if self.lost is None:
            self.lost = error
        if self.transport is not None:
            self.transport.abort()
        while self.waiting:
            future, timer = self.waiting.popleft()
            timer.cancel()
            if not future.done():
                future.set_exception(error)


class Wire:
    """One pipelined connection, opened on first use and again after a failure."""

    def __init__(self, client: Redis, timeout: float) -> None:
        pool = client.connection_pool
        self._kind = pool.connection_class
        self._settings = dict(pool.connection_kwargs)
        self._ssl = (
            pool.make_connection().ssl_context.get()
            if issubclass(self._kind, SSLConnection)
            else None
        )
        self.timeout = timeout
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Task[_Protocol] | None = None

    async def call(self, *args: Arg) -> object:
        """Send one command; its reply (an error reply raises ResponseError)."""
        protocol = self._protocol
        if protocol is None or protocol.lost is not None:
            protocol = await self._connect()
        reply = await protocol.send(encode(args))
        if isinstance(reply, errors.ResponseError):
            raise reply
        return reply

    async def run(self, script: AsyncScript, keys: list[str], args: list[Arg]) -> object:
        """EVALSHA of a registered script, loading it first if Redis does not know it (a new
        or flushed Redis)."""
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        try:
            return await self.call(*command)
        except errors.ResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        await self.call("SCRIPT", "LOAD", script.script)
        return await self.call(*command)

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            await asyncio.gather(self._connecting, return_exceptions=True)
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None

    async def _connect(self) -> _Protocol:
        """Concurrent callers share one attempt."""
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(self._open())
        protocol = await asyncio.shield(self._connecting)
        self._protocol = protocol
        return protocol

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        settings = self._settings
        opening = (
            loop.create_unix_connection(lambda: _Protocol(self.timeout), settings["path"])
            if issubclass(self._kind, UnixDomainSocketConnection)
            else loop.create_connection(
                lambda: _Protocol(self.timeout),
                settings.get("host", "localhost"),
                settings.get("port", 6379),
                ssl=self._ssl,
                server_hostname=settings.get("host") if self._ssl is not None else None,
            )
        )
        try:
            _, protocol = await asyncio.wait_for(opening, self.timeout)
        except (OSError, TimeoutError) as exc:
            raise errors.ConnectionError(f"cannot reach Redis: {exc}") from exc
        hello: list[tuple[Arg, ...]] = []
        password = settings.get("password")
        if password is not None:
            username = settings.get("username")
            hello.append(("AUTH", username, password) if username else ("AUTH", password))
        if settings.get("db"):
            hello.append(("SELECT", settings["db"]))
        try:
            replies = await asyncio.gather(*(protocol.send(encode(c)) for c in hello))
        except BaseException:
            protocol.fail(errors.ConnectionError("set-up failed"))
            raise
        for reply in replies:
            if isinstance(reply, errors.ResponseError):
                protocol.fail(errors.ConnectionError(f"Redis refused the set-up: {reply}"))
                raise reply
        return protocol
