"""The gateway's ASGI app: the proxy, health checks, the admin UI with the admin API behind it,
and the lifespan that opens the shared state and starts (and stops) the tracker and the decision
tables on it."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from console.app import open_console
from decisions.admin import create_admin_app, refusal
from decisions.service import DecisionService
from gateway import compose, metrics
from gateway.identity import Identity
from gateway.pending import PendingProfiles
from gateway.proxy import Proxy
from gateway.requestid import RequestIds
from gateway.sampler import Sampler
from gateway.settings import Settings, load_settings
from gateway.shutdown import Drain
from gateway.upstream import Upstream, UpstreamError
from state import State
from tracking.service import TrackingService

log = logging.getLogger("ocgateway")

_SERVICE_PATHS = ("/healthz", "/readyz", "/admin", "/metrics")


class Gateway:
    """Routes `/healthz`, `/readyz` and `/admin` to Starlette and everything else to the proxy.

    The proxy is a bare ASGI callable on purpose: the hot path skips Starlette's routing. The
    state, tracker and decision service exist from lifespan startup on (opening a store is I/O).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        measured = settings.metrics
        self.upstream = Upstream(
            settings.upstream,
            connections=settings.upstream_connections,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.upstream_timeout,
            observe=metrics.ordercloud_observer if measured else None,
        )
        self.identity = Identity(self.upstream.get_json, cache_size=settings.identity_cache)
        transport = (
            metrics.TimedTransport(httpx.AsyncHTTPTransport(), compose.client_servers(settings))
            if measured
            else None
        )
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0), transport=transport)
        self.drain = Drain(settings.drain_seconds, settings.shutdown_timeout)
        self.sampler: Sampler | None = None
        self.state: State | None = None
        self.tracking: TrackingService | None = None
        self.decisions: DecisionService | None = None
        self._admin: ASGIApp | None = None
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self.proxy = Proxy(
            self.upstream,
            self.identity,
            max_body_bytes=settings.max_body_bytes,
            trusted_proxies=frozenset(settings.trusted_proxies),
            identity_budget=settings.personalize_timeout_ms / 1000,
            metrics=metrics.RequestMetrics() if measured else None,
        )
        self.service = Starlette(
            exception_handlers={HTTPException: refusal},
            routes=[
                Route("/healthz", self.healthz),
                Route("/readyz", self.readyz),
                Route("/metrics", self.metrics),
                Mount("/admin", app=self.admin),
            ],
        )
        app: ASGIApp = RequestIds(self._route)
        if settings.cors_origins:
            app = CORSMiddleware(
                app,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
                allow_headers=["*"],
                expose_headers=["X-Decision"],
                max_age=600,
            )
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:
            await self._app(scope, receive, send)

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(_SERVICE_PATHS):
            await self.proxy(scope, receive, send)
        else:
            await self.service(scope, receive, send)

    async def admin(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._admin is None:
            response = JSONResponse({"error": "starting"}, status_code=503)
            await response(scope, receive, send)
            return
        await self._admin(scope, receive, send)

    async def start(self) -> None:
        settings = self.settings
        self.drain.install()
        await self.upstream.start()
        self._closers.append(self.upstream.close)
        self._closers.append(self.http.aclose)
        self.state = await compose.open_store(settings)
        self._closers.append(self.state.close)
        pending = PendingProfiles()  # logins whose profile is still being read
        self.tracking = compose.tracker(
            settings,
            self.state,
            self.http,
            self.upstream,
            self.identity,
            pending,
            metrics.delivery_observer if settings.metrics else None,
        )
        await self.tracking.start()
        self._closers.append(self._stop_tracking)
        self.decisions = compose.decider(settings, self.state, self.http, pending)
        await self.decisions.start()
        self._closers.append(self.decisions.stop)
        self._closers.append(
            await compose.follow_destinations(
                settings, self.http, self.tracking, self.decisions.personalize
            )
        )
        self._admin = await open_console(
            compose.console_config(settings),
            self.decisions,
            self.state,
            self.http,
            create_admin_app(self.decisions, settings.admin_token),
        )
        self.proxy.tracker = self.tracking
        self.proxy.decider = self.decisions
        if settings.metrics:
            self.sampler = Sampler(
                settings.metrics_interval,
                proxy=self.proxy,
                state=self.state,
                tracking=self.tracking,
                decisions=self.decisions,
            )
            self.sampler.start()
            self._closers.append(self.sampler.stop)

    async def stop(self) -> None:
        """Runs once the server has finished (or given up on) in-flight calls: what they recorded
        is in the store already; settle, finish deliveries within the shutdown budget, close."""
        self.proxy.tracker = self.proxy.decider = None
        while self._closers:
            await self._closers.pop()()
        metrics.process_exited()

    async def _stop_tracking(self) -> None:
        assert self.tracking is not None
        # settling, then deliveries, each get half of what is left of the budget
        await self.tracking.stop(timeout=self.drain.remaining() / 2)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:
                    log.exception("gateway failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def healthz(self, request: Request) -> JSONResponse:
        """The process is up."""
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> JSONResponse:
        """The upstream answers (any HTTP status will do) and the state store serves. A store
        that serves in a degraded way (Redis down, events spooled locally) is reported but ready:
        the storefront is still served and nothing is lost. Draining (SIGTERM received): 503 at
        once, so a load balancer stops sending before the server stops accepting."""
        if self.drain.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        checks: dict[str, str] = {}
        try:
            await self.upstream.get_json("/oauth/certs/readyz", None, timeout=3.0)
            checks["upstream"] = "ok"
        except UpstreamError as exc:
            checks["upstream"] = str(exc)
        if self.state is None:
            checks["store"] = "starting"
        else:
            checks.update(await self.state.health())
        ready = all(value == "ok" or value.startswith("degraded") for value in checks.values())
        body = {
            "status": ("ok" if all(v == "ok" for v in checks.values()) else "degraded")
            if ready
            else "unavailable",
            "checks": checks,
            "counters": {
                "proxy": dict(self.proxy.counters),
                "tracking": dict(self.tracking.counts) if self.tracking else {},
                "decisions": self.decisions.stats if self.decisions else {},
            },
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics(self, request: Request) -> Response:
        """Prometheus text format. With `OCGW_METRICS_TOKEN`: for that bearer token only;
        without: only for a loopback peer that is not forwarding a call (a sidecar, a local
        agent); with `OCGW_METRICS_PORT` set it is served there instead, not here."""
        settings = self.settings
        if not settings.metrics or settings.metrics_port:
            return Response(status_code=404)
        if settings.metrics_token:
            given = request.headers.get("authorization", "").encode()
            allowed = hmac.compare_digest(given, f"Bearer {settings.metrics_token}".encode())
        else:
            allowed = _loopback(request) and "x-forwarded-for" not in request.headers
        if not allowed:
            return Response(status_code=403)
        if self.sampler is not None:
            self.sampler.counts()
        body, content_type = await asyncio.to_thread(metrics.exposition)
        return Response(body, media_type=content_type)


def _loopback(request: Request) -> bool:
    try:
        return request.client is not None and ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False


def create_app(settings: Settings | None = None) -> Gateway:
    return Gateway(settings or load_settings())
