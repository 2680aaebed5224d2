"""The gateway's ASGI app: the proxy, health checks, the admin API, and the lifespan that opens
and closes the upstream pool, the tracker and the decision tables."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from decisions.admin import create_admin_app
from decisions.service import build_decider
from gateway.identity import Identity
from gateway.proxy import Proxy
from gateway.settings import Settings, load_settings
from gateway.upstream import Upstream, UpstreamError
from state.events import exposure
from tracking.service import build_tracking

log = logging.getLogger("ocgateway")

_SERVICE_PATHS = ("/healthz", "/readyz", "/admin")


class Gateway:
    """Routes `/healthz`, `/readyz` and `/admin` to Starlette and everything else to the proxy.

    The proxy is a bare ASGI callable on purpose: the hot path skips Starlette's routing.
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
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self.tracking = build_tracking(settings, self.identity, self.upstream)
        profiles = self.tracking.profiles
        self.decisions = build_decider(settings, profiles, self._emit_exposure)
        self.proxy = Proxy(
            self.upstream,
            self.identity,
            max_body_bytes=settings.max_body_bytes,
            trusted_proxies=frozenset(settings.trusted_proxies),
            tracker=self.tracking if settings.tracking else None,
            decider=self.decisions,
            identity_budget=settings.personalize_timeout_ms / 1000,
        )
        self.service = Starlette(
            routes=[
                Route("/healthz", self.healthz),
                Route("/readyz", self.readyz),
                Mount("/admin", app=create_admin_app(self.decisions, settings)),
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

    async def start(self) -> None:
        await self.upstream.start()
        self._closers.append(self.upstream.close)
        await self.tracking.start()
        self._closers.append(self.tracking.stop)
        await self.decisions.start()
        self._closers.append(self.decisions.stop)

    async def _emit_exposure(self, exposed: dict[str, Any]) -> None:
        """Decision exposures go through the tracker, with the same durability as any event."""
        await self.tracking.emit(
            exposure(
                exposed["visitor_id"],
                exposed["table"],
                exposed["rule"],
                exposed["variant"],
                at=exposed["at"],
                anonymous=exposed["visitor_id"].startswith("anon-"),
            )
        )

    async def stop(self) -> None:
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
        """The upstream answers (any HTTP status will do) and the stores are open."""
        checks: dict[str, str] = {}
        try:
            await self.upstream.get_json("/oauth/certs/readyz", None, timeout=3.0)
            checks["upstream"] = "ok"
        except UpstreamError as exc:
            checks["upstream"] = str(exc)
        try:
            await self.tracking.store.read(lambda conn: conn.execute("SELECT 1").fetchone())
            checks["store"] = "ok"
        except Exception as exc:
            checks["store"] = f"{type(exc).__name__}: {exc}"
        ready = all(value == "ok" for value in checks.values())
        body = {
            "status": "ok" if ready else "unavailable",
            "checks": checks,
            "counters": {
                "proxy": dict(self.proxy.counters),
                "tracking": dict(self.tracking.counts),
                "decisions": self.decisions.stats,
            },
        }
        return JSONResponse(body, status_code=200 if ready else 503)


def create_app(settings: Settings | None = None) -> Gateway:
    return Gateway(settings or load_settings())
