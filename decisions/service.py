"""DecisionService: the gateway's Decider, plus the live-version lifecycle around it.

Source of truth: the version store. The newest stored version is live. A change to the tables file
(or folder) is imported as a new version authored `file:<path>`; an admin publish or rollback adds
a new version too. A document that fails validation never replaces the live one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from decisions.compile import Compiled, compile_document, request_for, validate
from decisions.errors import TableError, ValidationFailed
from decisions.evaluate import Hit, evaluate, explain_table
from decisions.loader import parse_text, read_source, signature, watch
from decisions.personalize import Guest, Personalize
from decisions.rewrite import parse_query, reorder_for, rewrite_query
from decisions.segments import Facts, facts_for, segments_of
from gateway.call import Call, Decision
from gateway.headers import COUNTRY_HEADERS, browser_id, user_agent, utm_params
from gateway.identity import Visitor
from gateway.operations import CATEGORIES_LIST, PRODUCTS_LIST, PROMOTIONS_LIST, recognise
from gateway.pending import PendingProfiles
from state.exposures import Exposure
from state.profiles import Profile, Profiles
from state.versions import TableVersions, Version

log = logging.getLogger(__name__)

ROUTES = {
    PRODUCTS_LIST: "me/products",
    PROMOTIONS_LIST: "me/promotions",
    CATEGORIES_LIST: "me/categories",
}


@dataclass(frozen=True, slots=True)
class DecisionsConfig:
    """What the decision service needs, built once from the settings by the composition root."""

    tables: Path | None = None  # a YAML file or folder imported as a new version when it changes
    client_key: str | None = None  # CDP client key: names the storefront's `bid_` cookie
    watch_interval: float = 1.0  # how often the tables file is checked
    budget: float = 0.15  # seconds a list call may wait for a login's profile and for CDP
    country_headers: tuple[str, ...] = COUNTRY_HEADERS  # where the shopper's country is read


def decision_header(hits: Iterable[Hit], version: int) -> str:
    """X-Decision: one `table=…;rule=…;variant=…;version=…` entry per rule that hit."""
    return ", ".join(
        f"table={h.rule.table};rule={h.rule.id};variant={h.variant or 'default'};version={version}"
        for h in hits
    )


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while a document is prepared in a worker thread, then freeze what is
    alive.

    A 100,000-rule document creates millions of objects and a full collection walks them all,
    holding the GIL the event loop needs: paused, preparing is about four times faster, and the
    freeze (gc.freeze: later collections skip the objects alive now) keeps the new version from
    costing a second-long collection soon after and at every full collection while it is live.
    A compiled version holds no reference cycles, so reference counting still frees a replaced
    one. The service prepares one document at a time, so the pause ends between documents."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
        gc.freeze()
    finally:
        if enabled:
            gc.enable()


def _prepared_text(source: str) -> Compiled:
    """Parse, validate and compile (as version 0): the CPU-heavy part of going live, run in a
    worker thread so the event loop keeps serving. Raises ValidationFailed."""
    with _gc_paused():
        return compile_document(validate(parse_text(source)), 0)


def _prepared_file(path: Path) -> tuple[str, Compiled]:
    """(the text to store, the compiled document) for the tables file or folder."""
    with _gc_paused():
        source, parsed = read_source(path)
        return source, compile_document(validate(parsed), 0)


class DecisionService:
    def __init__(
        self,
        config: DecisionsConfig,
        *,
        profiles: Profiles,
        versions: TableVersions,
        personalize: Personalize | None = None,
        pending: PendingProfiles | None = None,
    ) -> None:
        self.config = config
        self.profiles = profiles
        self.versions = versions
        self.personalize = personalize
        self.pending = pending
        self.live: Compiled | None = None
        self.last_errors: list[TableError] = []  # why the last file edit was refused
        self._counts = dict.fromkeys(
            (
                "calls",
                "personalized",
                "no_table",
                "no_match",
                "publishes",
                "rejected",
                "reloads",
                "reload_errors",
                "sync_errors",
                "login_waits",
                "login_wait_timeouts",
            ),
            0,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._unloadable: int | None = None  # a stored version that no longer validates
        self._publishing = asyncio.Lock()
        self._preparing = asyncio.Lock()  # one document in a worker thread at a time

    @property
    def stats(self) -> dict[str, int]:
        """Counters for /readyz: calls, hits, failures (fail-open) and CDP health."""
        merged = dict(self._counts)
        if self.personalize:
            merged.update(self.personalize.stats)
        return merged

    # lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.sync()
        tables = self.config.tables
        if tables is not None:
            seen = await asyncio.to_thread(signature, tables)
            await self.reload()
            self._tasks.append(
                asyncio.create_task(watch(tables, self.reload, self.config.watch_interval, seen))
            )
        self._tasks.append(asyncio.create_task(self._follow(), name="table-versions"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.personalize:
            await self.personalize.close()

    async def _follow(self) -> None:
        """Go live with versions other replicas publish, as the store announces them."""
        while True:
            try:
                async for _ in self.versions.changes(after=self.version or 0):
                    await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception:  # the store is down: keep serving the live version, try again
                self._counts["sync_errors"] += 1
                log.warning("decision tables: cannot follow new versions; retrying", exc_info=True)
                await asyncio.sleep(self.config.watch_interval)

    # versions -------------------------------------------------------------------------------

    async def sync(self) -> None:
        """Go live with the newest stored version if it is newer than ours: another worker or
        replica sharing the store published it."""
        number = await self.versions.latest_number()
        if number is None or number == self._unloadable or number <= (self.version or 0):
            return
        latest = await self.versions.get(number)
        if latest is None:
            return
        try:
            compiled = await self._prepare(latest.source)
        except ValidationFailed as exc:  # only if the format tightened since it was stored
            self._unloadable = number
            log.error("decision tables: stored v%s no longer validates: %s", number, exc)
            return
        self._go_live(dataclasses.replace(compiled, version=latest.version))

    async def _prepare(self, source: str) -> Compiled:
        async with self._preparing:
            return await asyncio.to_thread(_prepared_text, source)

    def _go_live(self, compiled: Compiled) -> None:
        if self.live is None or compiled.version > self.live.version:
            self.live = compiled

    async def reload(self) -> Version | None:
        """Import the tables file as a new version unless that content was already imported; a bad
        file changes nothing."""
        path = self.config.tables
        assert path is not None
        try:
            async with self._preparing:
                source, compiled = await asyncio.to_thread(_prepared_file, path)
            version = await self._publish(
                source, compiled, f"file:{path}", "imported from file", unless_repeated=True
            )
        except ValidationFailed as exc:
            self._counts["reload_errors"] += 1
            self.last_errors = exc.errors
            for error in exc.errors:
                log.error("decision tables rejected, v%s stays live: %s", self.version, error)
            return None
        except OSError as exc:
            self._counts["reload_errors"] += 1
            self.last_errors = [TableError(f"cannot read: {exc.strerror or exc}", file=str(path))]
            log.error("decision tables: cannot read %s: %s", path, exc)
            return None
        self.last_errors = []
        if version is not None:
            self._counts["reloads"] += 1
        return version

    async def check(self, source: str) -> Compiled:
        """Validate and compile without publishing (dry run); raises ValidationFailed."""
        return await self._prepare(source)

    async def publish(self, source: str, author: str, comment: str = "") -> Version:
        """Validate, store as a new version, and make it live; raises ValidationFailed."""
        try:
            compiled = await self.check(source)
        except ValidationFailed:
            self._counts["rejected"] += 1
            raise
        version = await self._publish(source, compiled, author, comment)
        assert version is not None  # only imports may be skipped
        return version

    async def _publish(
        self,
        source: str,
        compiled: Compiled,
        author: str,
        comment: str,
        unless_repeated: bool = False,
    ) -> Version | None:
        async with self._publishing:
            version = await self.versions.add(
                source, author, comment, unless_repeated=unless_repeated
            )
            if version is None:
                return None
            self._go_live(dataclasses.replace(compiled, version=version.version))
        self._counts["publishes"] += 1
        log.info("decision tables v%s live (author %s)", version.version, author)
        return version

    async def rollback(self, number: int, author: str) -> Version | None:
        """Publish version `number`'s source again, as a new version; None if there is no such version."""
        old = await self.versions.get(number)
        if old is None:
            return None
        return await self.publish(old.source, author, f"rollback to v{number}")

    async def get_version(self, number: int) -> Version | None:
        return await self.versions.get(number)

    async def list_versions(self) -> list[Version]:
        return await self.versions.list()

    @property
    def version(self) -> int | None:
        return self.live.version if self.live else None

    # deciding -------------------------------------------------------------------------------

    def applies(self, call: Call) -> bool:
        live = self.live
        return (
            live is not None
            and call.method.upper() == "GET"
            and call.operation.kind in ROUTES
            and bool(live.by_route.get(ROUTES[call.operation.kind]))
        )

    async def decide(self, call: Call) -> Decision | None:
        """The proxy's hook. An error propagates: the proxy logs it, counts it once and forwards
        the shopper's query unchanged (fail open, in one place)."""
        live = self.live
        if live is None or call.method.upper() != "GET" or not call.operation.is_list:
            return None
        self._counts["calls"] += 1
        route = ROUTES[call.operation.kind]
        tables = live.by_route.get(route)
        if not tables:
            self._counts["no_table"] += 1
            return None
        headers = dict(call.headers.items())  # one pass over the raw headers, then dict look-ups
        budget = await self._profile_settled(call.shopper)
        facts, segments, _ = await self._segments(
            live, call.visitor, None, headers, call.received_at, call.query, budget
        )
        query = parse_query(call.query)
        hits = evaluate(tables, request_for(segments, query, facts.now, facts.visitor_id))
        if not hits:
            self._counts["no_match"] += 1
            return None
        rewrite = rewrite_query(query, [a for a in (h.actions for h in hits) if a is not None])
        exposures = tuple(
            Exposure(
                facts.visitor_id,
                h.rule.table,
                h.rule.id,
                h.variant or "default",
                live.version,
                route,
                facts.now,
            )
            for h in hits
            if facts.visitor_id
        )
        self._counts["personalized"] += 1
        return Decision(
            query=rewrite.query,
            header=decision_header(hits, live.version),
            reorder=reorder_for(rewrite.pin) if rewrite.pin else None,
            extra={"version": str(live.version), "kept": ",".join(rewrite.kept)},
            exposures=exposures,
        )

    async def _profile_settled(self, shopper: str | None) -> float:
        """Wait (within the budget) for a login or transfer of this shopper whose profile is still
        being read, so their first list call is decided on their order history; returns the
        budget left for CDP."""
        budget = self.config.budget
        if self.pending is None or not self.pending.pending(shopper):
            return budget
        self._counts["login_waits"] += 1
        started = time.monotonic()
        if not await self.pending.settled(shopper, budget):
            self._counts["login_wait_timeouts"] += 1
        return budget - (time.monotonic() - started)

    async def _segments(
        self,
        live: Compiled,
        visitor: Visitor | None,
        profile: Profile | None,
        headers: Mapping[str, str],
        now: float,
        query: str = "",
        budget: float | None = None,
    ) -> tuple[Facts, frozenset[str], frozenset[str]]:
        """(facts, local segment names, CDP segment names) for one visitor."""
        if profile is None and visitor is not None:
            profile = await self.profiles.get(visitor.id)
        facts = facts_for(visitor, profile, headers, now, self.config.country_headers)
        cdp: frozenset[str] = frozenset()
        if self.personalize is not None and live.cdp_names and facts.visitor_id:
            guest = Guest(
                visitor_id=facts.visitor_id,
                anonymous=facts.anonymous,
                browser_id=(profile.browser_id if profile else None)
                or browser_id(headers, self.config.client_key),
                generation=profile.identified_at if profile else 0.0,
                client_id=visitor.client_id if visitor else None,
                language=facts.language,
                currency=facts.currency,
                user_agent=user_agent(headers) or None,
                utm=tuple(utm_params(query, headers.get("referer")).items()),
                country=facts.country,
            )
            cdp = await self.personalize.segments(guest, budget) or frozenset()
        return facts, segments_of(live.segments, facts, cdp), cdp

    async def explain(
        self,
        visitor_id: str | None,
        url: str,
        segments: Iterable[str] = (),
        headers: Mapping[str, str] | None = None,
        now: float | None = None,
        *,
        compiled: Compiled | None = None,
        profile: Profile | None = None,
    ) -> dict[str, Any]:
        """What this shopper would get for this storefront call, and why (for the CLI and admin).

        `compiled` explains a draft instead of the live version; `profile` stands in for the
        stored one (a made-up test shopper)."""
        live = compiled or self.live
        path, _, query = url.partition("?")
        path = "/" + path.split("://", 1)[-1].split("/", 1)[-1] if "://" in path else path
        operation = recognise("GET", path)
        if operation is None or not operation.is_list:
            return {"error": f"{path} is not a list route decisions rewrite"}
        if live is None:
            return {"error": "no decision tables are live"}
        headers = {k.lower(): v for k, v in (headers or {}).items()}
        if profile is None and visitor_id:
            profile = await self.profiles.get(visitor_id)
        visitor = (
            None
            if profile or not visitor_id
            else Visitor(visitor_id, visitor_id.startswith("anon-"))
        )
        facts, found, cdp = await self._segments(
            live, visitor, profile, headers, time.time() if now is None else now
        )
        forced = frozenset(s for s in segments if s)
        request = request_for(found | forced, query, facts.now, facts.visitor_id)
        route = ROUTES[operation.kind]
        tables = live.by_route.get(route, ())
        hits = evaluate(tables, request)
        rewrite = rewrite_query(query, [a for a in (h.actions for h in hits) if a is not None])
        return {
            "version": live.version,
            "route": route,
            "visitor": facts.visitor_id,
            "profile_found": profile is not None,
            "segments": sorted(found | forced),
            "segments_given": sorted(forced - found),
            "cdp_segments": sorted(cdp),
            "tables": [
                {"table": t.id, "hit": t.hit, "rules": explain_table(t, request)} for t in tables
            ],
            "original_query": query,
            "query": rewrite.query if hits else query,
            "kept_shopper_params": list(rewrite.kept),
            "pin": list(rewrite.pin or ()),
            "x_decision": decision_header(hits, live.version) if hits else None,
        }
