"""Profile writes (`tracking/learning.py`): coalesced per visitor, and kept through a short
store outage: refused changes go again, in order, ahead of newer ones, within bounds."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tracking.learning import RETRY_FOR, ProfileWriter

pytestmark = pytest.mark.anyio


class FlakyProfiles:
    """Profiles (lists of what was learned) behind a store that refuses the first writes."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.stored: dict[str, Any] = {}

    async def update(self, visitor_id: str, change: Any) -> Any:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the store is away")
        self.stored[visitor_id] = change(self.stored.get(visitor_id))
        return self.stored[visitor_id]


def learned(what: str) -> Any:
    return lambda profile: [*(profile or []), what]


async def test_changes_the_store_refused_go_again_in_order() -> None:
    profiles = FlakyProfiles(failures=2)
    writer = ProfileWriter(profiles, delay=0.01, retry_first=0.01)  # type: ignore[arg-type]
    writer.add("v1", learned("viewed bikes"))
    await writer.flush()  # refused: it waits
    writer.add("v1", learned("ordered"))  # learned meanwhile: goes after it
    for _ in range(200):
        if "v1" in profiles.stored:
            break
        await asyncio.sleep(0.01)
    assert profiles.stored["v1"] == ["viewed bikes", "ordered"]
    assert (writer.errors, writer.dropped) == (2, 0)
    await writer.close()


async def test_what_waits_is_bounded_and_the_oldest_visitors_go_first() -> None:
    writer = ProfileWriter(FlakyProfiles(failures=10**6), max_waiting=2)  # type: ignore[arg-type]
    for visitor in ("v1", "v2", "v3"):
        writer.add(visitor, learned("viewed"))
    await writer.flush()
    assert writer.dropped == 1
    assert list(writer._pending) == ["v2", "v3"]
    await writer.close()


async def test_changes_failing_for_too_long_are_given_up() -> None:
    now = [0.0]
    writer = ProfileWriter(
        FlakyProfiles(failures=10**6),  # type: ignore[arg-type]
        clock=lambda: now[0],
    )
    writer.add("v1", learned("old"))
    await writer.flush()
    now[0] = RETRY_FOR + 1
    writer.add("v1", learned("new"))
    await writer.flush("v1")  # refused again, too long after the first failure
    assert writer.dropped == 1
    assert writer._pending == {}  # the old and the new went as one write: both given up
    await writer.close()
