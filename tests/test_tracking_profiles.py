"""The SQLite profile store's read cache."""

from __future__ import annotations

import pytest

from tracking import profilestore
from tracking.profiles import Profile
from tracking.profilestore import SqliteProfileStore
from tracking.store import Store

pytestmark = pytest.mark.anyio


async def test_a_missing_profile_is_remembered_briefly_and_forgotten_on_write(tmp_path):
    store = Store(tmp_path / "p.db", profilestore.SCHEMA)
    store.open()
    try:
        profiles = SqliteProfileStore(store)
        reads = 0
        read = store.read

        async def counting(fn):
            nonlocal reads
            reads += 1
            return await read(fn)

        store.read = counting  # type: ignore[method-assign]
        assert await profiles.get("anon-1") is None
        assert await profiles.get("anon-1") is None
        assert reads == 1  # the second look-up came from memory

        await profiles.put(Profile(visitor_id="anon-1", orders=2))
        found = await profiles.get("anon-1")
        assert found is not None and found.orders == 2

        assert await profiles.get("anon-2") is None
        profiles.cached(Profile(visitor_id="anon-2", orders=1))  # the tracker saved one
        assert (await profiles.get("anon-2")).orders == 1
    finally:
        store.close()
