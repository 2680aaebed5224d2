"""Prometheus metrics: what is measured, how the hot path records it, and how it is exposed.

Names follow the OpenTelemetry HTTP conventions (`http_server_request_duration_seconds`,
`http_client_request_duration_seconds`, `http_request_method`, `http_route`,
`http_response_status_code` as a class such as `2xx`); the gateway's own start with `ocgw_`.
Every label set is bounded: routes are templates from `gateway.operations` (or `other`), methods
outside the standard ones are `_OTHER`, destinations and servers come from the configuration,
and decision tables/rules from the live document, capped per process.

The metric objects are module-level because that is how prometheus-client keeps them: one value
per process and label set (in multiprocess mode, one memory-mapped file per process). With
`ocgateway serve --workers N` the CLI points `PROMETHEUS_MULTIPROC_DIR` at a fresh directory
before the workers start, and any worker's `/metrics` adds up all of them. That mode has no
custom collectors, so counts kept in memory by the services are mirrored into counters, and
per-process states become gauges with a multiprocess mode saying how to combine them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping

import httpx
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from state.exposures import Exposure

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_ROUTE = "other"
MAX_RULES = 200  # distinct (table, rule) label pairs per process; the rest count as `other`
_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")

SERVER_DURATION = Histogram(
    "http_server_request_duration_seconds",
    "Proxied storefront calls, from the first request byte to the last answer byte.",
    ("http_request_method", "http_route", "http_response_status_code"),
    buckets=BUCKETS,
)
CLIENT_DURATION = Histogram(
    "http_client_request_duration_seconds",
    "Calls the gateway makes, until the answer's headers (status `error`: no answer).",
    ("server", "http_request_method", "http_response_status_code"),
    buckets=BUCKETS,
)
HOOK_FAILURES = Counter(
    "ocgw_hook_failures",
    "Identity, decision and tracking failures the call went on past.",
    ("hook",),
)
DECISIONS = Counter(
    "ocgw_decisions", "Rules applied to list calls OrderCloud answered 2xx.", ("table", "rule")
)
DELIVERIES = Counter(
    "ocgw_delivery_attempts",
    "Delivery attempts per destination: delivered, retry (scheduled again) or dead.",
    ("destination", "outcome"),
)
PROXY_EVENTS = Counter(
    "ocgw_proxy_events", "Calls the proxy answered itself or cut short, by reason.", ("event",)
)
TRACKING_EVENTS = Counter("ocgw_tracking", "Events recorded and calls not tracked.", ("event",))
DECISION_CALLS = Counter("ocgw_decision_calls", "List calls decided, by outcome.", ("outcome",))
CALLFLOWS = Counter(
    "ocgw_callflows", "Personalize callFlows requests for segments, by outcome.", ("outcome",)
)
STORE_ERRORS = Counter("ocgw_store_errors", "State store operations that failed.", ("operation",))
# Shared-store facts: every process reads the same numbers, so the live processes' max is right.
OUTBOX_PENDING = Gauge(
    "ocgw_outbox_pending",
    "Events waiting for a destination.",
    ("destination",),
    multiprocess_mode="livemax",
)
OUTBOX_OLDEST = Gauge(
    "ocgw_outbox_oldest_age_seconds",
    "Age of the oldest undelivered event (0: none).",
    ("destination",),
    multiprocess_mode="livemax",
)
OUTBOX_DEAD = Gauge(
    "ocgw_outbox_dead",
    "Dead-lettered events (replay with `ocgateway events replay --dead`).",
    ("destination",),
    multiprocess_mode="livemax",
)
STORE_UP = Gauge(
    "ocgw_store_up",
    "1 when the state store answers its health check (0.5: degraded).",
    multiprocess_mode="livemin",
)
# Per-process: each process has its own breaker per destination; show the worst live one.
BREAKER_STATE = Gauge(
    "ocgw_breaker_state",
    "Delivery circuit per destination: 0 closed, 1 half-open, 2 open.",
    ("destination",),
    multiprocess_mode="livemax",
)


def status_class(status: int | None) -> str:
    if status is None:
        return "error"
    index = status // 100 - 1
    return _CLASSES[index] if 0 <= index < len(_CLASSES) else "error"


class RequestMetrics:
    """What the proxy records per call. Label children are cached: `labels()` takes a lock and
    validates its arguments on every call, a dict hit on a small bounded key does not."""

    def __init__(self) -> None:
        self._server: dict[tuple[str, str, int], object] = {}
        self._rules: dict[tuple[str, str], object] = {}

    def observe(self, method: str, route: str | None, status: int, seconds: float) -> None:
        if method not in METHODS:
            method = "_OTHER"
        key = (method, route or OTHER_ROUTE, status // 100)
        child = self._server.get(key)
        if child is None:
            child = SERVER_DURATION.labels(key[0], key[1], status_class(status))
            self._server[key] = child
        child.observe(seconds)  # type: ignore[attr-defined]

    def decided(self, exposures: Iterable[Exposure]) -> None:
        for exposure in exposures:
            key = (exposure.table, exposure.rule)
            child = self._rules.get(key)
            if child is None:
                if len(self._rules) >= MAX_RULES:
                    key = (OTHER_ROUTE, OTHER_ROUTE)
                child = self._rules.get(key) or DECISIONS.labels(*key)
                self._rules[key] = child
            child.inc()  # type: ignore[attr-defined]

    @staticmethod
    def hook_failed(hook: str) -> None:
        HOOK_FAILURES.labels(hook).inc()


def observe_client(server: str, method: str, status: int | None, seconds: float) -> None:
    if method not in METHODS:
        method = "_OTHER"
    CLIENT_DURATION.labels(server, method, status_class(status)).observe(seconds)


def ordercloud_observer(method: str, status: int | None, seconds: float) -> None:
    """For `gateway.upstream.Upstream`: every call to OrderCloud (proxied, identity, hydration)."""
    observe_client("ordercloud", method, status, seconds)


def delivery_observer(destination: str, outcome: str, count: int) -> None:
    """For the dispatchers' `Policy.observe`."""
    DELIVERIES.labels(destination, outcome).inc(count)


class TimedTransport(httpx.AsyncBaseTransport):
    """Wraps the httpx transport the destinations and Personalize share, timing each call under
    the name of the configured service whose URL it starts with (longest match wins)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, servers: Mapping[str, str]) -> None:
        self.inner = inner
        self.servers = sorted(servers.items(), key=lambda item: len(item[0]), reverse=True)

    def server(self, url: httpx.URL) -> str:
        text = str(url)
        return next((name for prefix, name in self.servers if text.startswith(prefix)), "other")

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        try:
            response = await self.inner.handle_async_request(request)
        except BaseException:
            elapsed = time.perf_counter() - started
            observe_client(self.server(request.url), request.method, None, elapsed)
            raise
        elapsed = time.perf_counter() - started
        observe_client(self.server(request.url), request.method, response.status_code, elapsed)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class Mirror:
    """Turns counts the services keep in memory into counter increments (custom collectors do
    not work in multiprocess mode). A count that went down (its service restarted) starts over."""

    def __init__(self) -> None:
        self._seen: dict[tuple[int, str], int] = {}

    def update(self, counter: Counter, counts: Mapping[str, int]) -> None:
        for label, value in counts.items():
            key = (id(counter), label)
            delta = value - self._seen.get(key, 0)
            if delta > 0:
                counter.labels(label).inc(delta)
            self._seen[key] = value


def registry() -> CollectorRegistry:
    """All processes' metrics in multiprocess mode (read from their files at each collection),
    else this process's."""
    if os.environ.get(MULTIPROC_ENV):
        shared = CollectorRegistry()
        multiprocess.MultiProcessCollector(shared)
        return shared
    return REGISTRY


def exposition() -> tuple[bytes, str]:
    return generate_latest(registry()), CONTENT_TYPE_LATEST


def process_exited() -> None:
    """Drop this process's live gauges (multiprocess mode): a stopped worker reports nothing."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(os.getpid())
