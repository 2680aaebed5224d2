"""Shared test fixtures."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from state import State, StateConfig, open_state
from tests.redisserver import drop, redis_server, unique_prefix

# Servers that module-scoped fixtures run in threads may log after pytest has closed the stream
# it captured for an earlier test: that is not a failure, and the traceback logging would print
# for it is noise in the test output.
logging.raiseExceptions = False


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis (started if the machine has none running)."""
    with redis_server() as url:
        yield url


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own, deleted afterwards."""
    prefix = unique_prefix()
    yield prefix
    drop(redis_url, prefix)


@pytest.fixture(params=["sqlite", "redis"])
def state_config(request: pytest.FixtureRequest, tmp_path: Path) -> StateConfig:
    """The same contract tests run on both backends: a SQLite file, and a real Redis under a
    prefix of the test's own. Leases are short so take-overs happen within a test."""
    if request.param == "sqlite":
        return StateConfig(str(tmp_path / "state.db"), lease_seconds=1.0)
    return StateConfig(
        request.getfixturevalue("redis_url"),
        prefix=request.getfixturevalue("redis_prefix"),
        spool=tmp_path / "spool.db",
        lease_seconds=1.0,
        partitions=4,
    )


@pytest.fixture
async def replica(state_config: StateConfig) -> AsyncIterator[Callable[[], Awaitable[State]]]:
    """Opens one more instance on the same store each call (a replica, or another process on
    the same SQLite file); all are closed afterwards."""
    opened: list[State] = []

    async def opener() -> State:
        state = await open_state(state_config)
        opened.append(state)
        return state

    yield opener
    for state in opened:
        await state.close()
