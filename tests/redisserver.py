"""A real Redis for the tests: the machine's on 127.0.0.1:6379 if it answers, else a
`redis-server` started on a free loopback port (nothing persisted). Never skipped: a test that
needs Redis fails loudly without one."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from tests.servers import free_port

DEFAULT = "redis://127.0.0.1:6379/0"


def answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except redis.RedisError:
        return False


DURABLE = ("--save", "", "--appendonly", "yes", "--appendfsync", "always")  # a kill loses nothing
EPHEMERAL = ("--save", "", "--appendonly", "no")


class RedisProcess:
    """A `redis-server` of the test's own on a free loopback port, which it may kill, hang
    (SIGSTOP) and start again on the same port and folder. With `DURABLE` options every write is
    fsynced before Redis answers, so a kill loses nothing Redis acknowledged: what a test then
    finds lost is the gateway's doing."""

    def __init__(self, folder: Path, *options: str, password: str | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.options = (options or DURABLE) + (("--requirepass", password) if password else ())
        self.port = free_port()
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (make test installs it)")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)]
            + list(self.options),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not answers(self.url):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def pause(self) -> None:
        """Hang Redis: connections stay open and nothing answers (a stalled host, a long fork)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


@contextmanager
def own_redis(folder: Path, *options: str, password: str | None = None) -> Iterator[RedisProcess]:
    """A started `RedisProcess`, killed on exit."""
    server = RedisProcess(folder, *options, password=password)
    server.start()
    try:
        yield server
    finally:
        server.kill()  # SIGKILL: a hung (SIGSTOPped) server dies too


@contextmanager
def redis_server() -> Iterator[str]:
    """The URL of a Redis server for this test session: the machine's when it answers."""
    if answers(DEFAULT):
        yield DEFAULT
        return
    folder = Path(tempfile.mkdtemp(prefix="ocgw-redis-"))
    try:
        with own_redis(folder, *EPHEMERAL) as server:
            yield server.url
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def unique_prefix() -> str:
    return f"ocgw-test-{uuid.uuid4().hex[:10]}:"


def drop(url: str, prefix: str) -> None:
    """Delete every key under `prefix` (tests clean up after themselves)."""
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    client.close()
