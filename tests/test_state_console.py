"""The contract of the admin UI's stores (drafts, accounts, saved test shoppers, audit log,
sign-in failures, shared secrets) and of exposures' recent match counts, on both backends. Two
independently opened instances stand for two replicas: what one writes, the other reads."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from state import State
from state.accounts import Account
from state.audit import AuditEntry
from state.drafts import DISCARDED, DRAFT, PENDING, PUBLISHED, Draft
from state.exposures import Exposure
from state.shoppers import SavedShopper

pytestmark = pytest.mark.anyio
Opener = Callable[[], Awaitable[State]]


def _draft(draft_id: str, at: float, source: str = "tables: []\n") -> Draft:
    return Draft(draft_id, f"title {draft_id}", source, 3, "mia", at, at, "mia", editors=("mia",))


async def test_a_draft_saved_on_one_replica_is_seen_on_another(replica: Opener) -> None:
    one, two = (await replica()).console, (await replica()).console
    await one.drafts.create(_draft("a", 1.0))
    await one.drafts.create(_draft("b", 2.0))
    seen = await two.drafts.get("a")
    assert seen == _draft("a", 1.0)
    assert [d.id for d in await two.drafts.list()] == ["b", "a"]  # most recently changed first
    changed = await two.drafts.change("a", [DRAFT], source="x: 1\n", updated_at=3.0)
    assert changed is not None and changed.source == "x: 1\n" and changed.editors == ("mia",)
    assert (await one.drafts.get("a")) == changed
    assert [d.id for d in await one.drafts.list()] == ["a", "b"]
    assert await one.drafts.get("missing") is None


async def test_a_draft_changes_only_from_the_expected_state(replica: Opener) -> None:
    one, two = (await replica()).console, (await replica()).console
    await one.drafts.create(_draft("a", 1.0))
    pending = await one.drafts.change("a", [DRAFT], state=PENDING, requested_by="mia")
    assert pending is not None and pending.state == PENDING
    assert await two.drafts.change("a", [DRAFT], source="edited") is None  # locked for review
    assert await two.drafts.change("missing", [DRAFT], source="x") is None
    # Two publishers approve at once: exactly one wins.
    results = await asyncio.gather(
        one.drafts.change("a", [PENDING], state=PUBLISHED, approved_by="ann"),
        two.drafts.change("a", [PENDING], state=PUBLISHED, approved_by="bob"),
    )
    assert sum(r is not None for r in results) == 1
    assert await one.drafts.change("a", [DRAFT, PENDING], state=DISCARDED) is None


async def test_accounts(replica: Opener) -> None:
    one, two = (await replica()).console, (await replica()).console
    await one.accounts.put(Account("zoe", "editor", "$argon2id$x", 1.0))
    await one.accounts.put(Account("ann", "publisher", "$argon2id$y", 2.0))
    assert await two.accounts.get("zoe") == Account("zoe", "editor", "$argon2id$x", 1.0)
    assert [a.username for a in await two.accounts.list()] == ["ann", "zoe"]
    await two.accounts.put(Account("zoe", "publisher", "$argon2id$z", 1.0))
    assert (await one.accounts.get("zoe")).role == "publisher"  # type: ignore[union-attr]
    assert await one.accounts.remove("zoe") is True
    assert await two.accounts.remove("zoe") is False
    assert await two.accounts.get("zoe") is None


async def test_saved_shoppers(replica: Opener) -> None:
    one, two = (await replica()).console, (await replica()).console
    jane = SavedShopper("jane", orders=3, spent=640.0, segments=("VIP",), country="GB", hour=9)
    await one.shoppers.put(jane)
    await one.shoppers.put(SavedShopper("joe"))
    assert await two.shoppers.get("jane") == jane
    assert [s.name for s in await two.shoppers.list()] == ["jane", "joe"]
    assert await two.shoppers.remove("joe") is True
    assert await one.shoppers.get("joe") is None


async def test_the_audit_log_is_newest_first(replica: Opener) -> None:
    one, two = (await replica()).console, (await replica()).console
    for i in range(5):
        await (one if i % 2 else two).audit.add(AuditEntry(float(i), "mia", f"action {i}", "v1"))
    recent = await one.audit.recent(3)
    assert [e.action for e in recent] == ["action 4", "action 3", "action 2"]
    assert recent[0] == AuditEntry(4.0, "mia", "action 4", "v1", "")


async def test_failures_are_counted_across_replicas_within_a_window(replica: Opener) -> None:
    one, two = (await replica()).console, (await replica()).console
    assert await one.attempts.fail("user:mia", 0.5) == 1
    assert await two.attempts.fail("user:mia", 0.5) == 2
    assert await one.attempts.failures("user:mia") == 2
    assert await one.attempts.failures("user:zoe") == 0
    await asyncio.sleep(0.6)
    assert await two.attempts.failures("user:mia") == 0  # the window passed
    assert await two.attempts.fail("user:mia", 5) == 1
    await one.attempts.clear("user:mia")
    assert await two.attempts.failures("user:mia") == 0


async def test_a_shared_secret_is_made_once(replica: Opener) -> None:
    one, two = (await replica()).console, (await replica()).console
    first = await one.secrets.shared("session", lambda: "first")
    second = await two.secrets.shared("session", lambda: "second")
    assert first == second == "first"


async def test_exposures_count_recent_matches_per_rule(replica: Opener) -> None:
    one, two = await replica(), await replica()
    now = time.time()
    old = now - 3 * 24 * 3600
    await one.exposures.add(
        [
            Exposure("v1", "t", "a", "default", 1, "me/products", now),
            Exposure("v2", "t", "a", "control", 1, "me/products", now),
            Exposure("v1", "t", "b", "default", 1, "me/products", now - 10),
            Exposure("v3", "t", "b", "default", 1, "me/products", old),
        ]
    )
    counts = await two.exposures.matched_since(now - 24 * 3600)
    assert counts == {("t", "a"): 2, ("t", "b"): 1}
