"""The gateway's ASGI app: the proxy, health checks, the admin API, and the lifespan that opens
the shared state and starts (and stops) the tracker and the decision tables on it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from decisions.admin import create_admin_app, refusal
from decisions.service import DecisionService
from gateway import compose
from gateway.identity import Identity
from gateway.proxy import Proxy
from gateway.settings import Settings, load_settings
from gateway.upstream import Upstream, UpstreamError
from state import State
from tracking.service import TrackingService

log = logging.getLogger("ocgateway")

_SERVICE_PATHS = ("/healthz", "/readyz", "/admin")


class Gateway:
    """Routes `/healthz`, `/readyz` and `/admin` to Starlette and everything else to the proxy.

    The proxy is a bare ASGI callable on purpose: the hot path skips Starlette's routing. The
    state, tracker and decision service exist from lifespan startup on (opening a store is I/O).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.upstream = Upstream(
            settings.upstream,
            connections=settings.upstream_connections,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.upstream_timeout,
        )
        self.identity = Identity(self.upstream.get_json)
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0))
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
        )
        self.service = Starlette(
            exception_handlers={HTTPException: refusal},
            routes=[
                Route("/healthz", self.healthz),
                Route("/readyz", self.readyz),
                Mount("/admin", app=self.admin),
            ]
        )
        app: ASGIApp = self._route
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
        await self.upstream.start()
        self._closers.append(self.upstream.close)
        self._closers.append(self.http.aclose)
        self.state = await compose.open_store(settings)
        self._closers.append(self.state.close)
        self.tracking = compose.tracker(
            settings, self.state, self.http, self.upstream, self.identity
        )
        await self.tracking.start()
        self._closers.append(self.tracking.stop)
        self.decisions = compose.decider(settings, self.state, self.http)
        await self.decisions.start()
        self._closers.append(self.decisions.stop)
        self._admin = create_admin_app(self.decisions, settings.admin_token)
        self.proxy.tracker = self.tracking
        self.proxy.decider = self.decisions

    async def stop(self) -> None:
        self.proxy.tracker = self.proxy.decider = None
        while self._closers:
            await self._closers.pop()()

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
        the storefront is still served and nothing is lost."""
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


def create_app(settings: Settings | None = None) -> Gateway:
    return Gateway(settings or load_settings())
