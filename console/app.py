"""The admin UI as one ASGI app: its pages and forms, its static files, and the REST API
(decisions.admin) behind them, all mounted by the gateway at /admin.

Page paths (/, /drafts, /history, /preview, /experiments, /audit, /signin, /static, /check,
/compare, /shoppers) never clash with the API's (/tables, /source, /validate, /publish,
/versions, /rollback, /explain, /stats, /openapi.json), which keep their bearer token.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable

import httpx
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from console import editing, previewing, publishing, reports, signin
from console.config import ConsoleConfig
from console.preview import Storefront
from console.sessions import Sessions
from console.web import HERE, Handler, Ui, action, page
from console.workflow import Workflow
from decisions.service import DecisionService
from state import State
from state.accounts import PUBLISHER

# Pages load only what the gateway serves (scripts, styles, fonts, requests); product images
# may come from the shop's image host. Nothing may frame the UI.
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' https: http: data:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


class _PageHeaders:
    """Security headers on every HTML page."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if headers.get("content-type", "").startswith("text/html"):
                    for name, value in SECURITY_HEADERS.items():
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, sending)


def _public(
    ui: Ui, handler: Callable[[Ui, Request], Awaitable[Response]]
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return await handler(ui, request)

    return endpoint


async def open_console(
    config: ConsoleConfig,
    service: DecisionService,
    state: State,
    http: httpx.AsyncClient,
    api: ASGIApp,
) -> Starlette:
    """The UI around `api`. Without OCGW_SESSION_SECRET the signing key is made once and kept
    in the shared state, so every replica accepts every other's sessions."""
    secret = config.session_secret or await state.console.secrets.shared(
        "session", lambda: secrets.token_urlsafe(48)
    )
    ui = Ui(
        config=config,
        service=service,
        state=state.console,
        exposures=state.exposures,
        profiles=state.profiles,
        workflow=Workflow(service, state.console, require_approval=config.require_approval),
        sessions=Sessions(secret, config.session_seconds, config.secure_cookies),
        storefront=Storefront(config.preview, http) if config.preview else None,
    )

    def get(path: str, handler: Handler) -> Route:
        return Route(path, page(ui, handler), methods=["GET"])

    def post(path: str, handler: Handler, role: str | None = None) -> Route:
        return Route(path, action(ui, handler, role), methods=["POST"])

    draft = "/drafts/{draft}"
    routes = [
        get("/", reports.overview),
        Route("/signin", _public(ui, signin.signin_page), methods=["GET"]),
        Route("/signin", _public(ui, signin.signin), methods=["POST"]),
        post("/signout", signin.signout),
        get("/drafts", editing.drafts_page),
        post("/drafts", editing.create_draft),
        get(draft, editing.draft_page),
        get(draft + "/rules/{table:int}/{rule}", editing.rule_page),
        post(draft + "/rules/{table:int}/{rule}", editing.save_rule),
        post(draft + "/rules/{table:int}/{rule}/delete", editing.delete_rule),
        get(draft + "/segments/{segment}", editing.segment_page),
        post(draft + "/segments/{segment}", editing.save_segment),
        post(draft + "/segments/{segment}/delete", editing.delete_segment),
        get(draft + "/source", editing.source_page),
        post(draft + "/source", editing.save_source),
        post(draft + "/publish", publishing.publish),
        post(draft + "/approve", publishing.approve, PUBLISHER),
        post(draft + "/send-back", publishing.send_back),
        post(draft + "/discard", publishing.discard),
        post("/check", editing.check),
        get("/history", publishing.history_page),
        get("/history/{number:int}", publishing.version_page),
        post("/history/{number:int}/rollback", publishing.rollback, PUBLISHER),
        get("/compare", publishing.compare_page),
        get("/preview", previewing.preview_page),
        post("/shoppers", previewing.save_shopper),
        post("/shoppers/{name}/delete", previewing.delete_shopper),
        get("/experiments", reports.experiments),
        post("/experiments/end", reports.end_experiment),
        get("/audit", reports.audit),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
        Mount("", app=api),
    ]
    return Starlette(routes=routes, middleware=[Middleware(_PageHeaders)])
