"""A real Redis for the tests: the machine's on 127.0.0.1:6379 if it answers, else a
`redis-server` started on a free loopback port (nothing persisted). Never skipped: a test that
needs Redis fails loudly without one."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from tests.servers import free_port

DEFAULT = "redis://127.0.0.1:6379/0"


def answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except redis.RedisError:
        return False


@contextmanager
def redis_server() -> Iterator[str]:
    """The URL of a Redis server for this test session."""
    if answers(DEFAULT):
        yield DEFAULT
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("no Redis on 127.0.0.1:6379 and no redis-server to start (install it)")
    port = free_port()
    folder = tempfile.mkdtemp(prefix="ocgw-redis-")
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            folder,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while not answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {port}")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(10)
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
