"""What every admin UI handler shares: the services, templates, the signed-in account, and the
guards that make role and CSRF checks impossible to forget.

Every route is declared through `page` (a signed-in reader) or `action` (a state-changing POST:
signed in, the CSRF token of the session, and the role it needs), so no handler checks either
itself.
"""

from __future__ import annotations

import hmac
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from console.config import ConsoleConfig
from console.preview import Storefront
from console.sessions import COOKIE, Session, Sessions
from console.workflow import Refused, Workflow
from decisions.compile import Compiled
from decisions.service import DecisionService
from state import ConsoleState
from state.accounts import PUBLISHER, Account
from state.exposures import Exposures
from state.profiles import Profiles
from state.versions import source_hash

HERE = Path(__file__).parent
COMPILED_KEPT = 8  # compiled drafts remembered per process
Handler = Callable[["Ui", Request, Account], Awaitable[Response]]


def _when(epoch: float | None) -> str:
    if not epoch:
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _ago(epoch: float | None) -> str:
    if not epoch:
        return ""
    seconds = max(0, int(time.time() - epoch))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return "just now"


def templates() -> Jinja2Templates:
    """Autoescaping on for every template: whatever a user typed is shown as text."""
    loaded = Jinja2Templates(directory=str(HERE / "templates"))
    loaded.env.autoescape = True
    loaded.env.filters["when"] = _when
    loaded.env.filters["ago"] = _ago
    return loaded


@dataclass
class Ui:
    config: ConsoleConfig
    service: DecisionService
    state: ConsoleState
    exposures: Exposures
    profiles: Profiles
    workflow: Workflow
    sessions: Sessions
    storefront: Storefront | None
    templates: Jinja2Templates = field(default_factory=templates)
    _compiled: OrderedDict[str, Compiled] = field(default_factory=OrderedDict)

    async def compiled(self, source: str) -> Compiled:
        """A draft compiled (validation included), remembered for the last few sources: the
        editor and preview pages of a 1,000-rule draft then cost no compile per view."""
        key = source_hash(source)
        found = self._compiled.get(key)
        if found is None:
            found = await self.service.check(source)
            self._compiled[key] = found
            while len(self._compiled) > COMPILED_KEPT:
                self._compiled.popitem(last=False)
        self._compiled.move_to_end(key)
        return found

    async def user(self, request: Request) -> tuple[Account, Session] | None:
        session = self.sessions.read(request.cookies.get(COOKIE))
        if session is None:
            return None
        account = await self.state.accounts.get(session.username)
        return (account, session) if account is not None else None

    def render(
        self,
        request: Request,
        template: str,
        context: dict[str, Any],
        status: int = 200,
    ) -> HTMLResponse:
        account, session = (
            request.state.signed_in if hasattr(request.state, "signed_in") else (None, None)
        )
        base = {
            "user": account,
            "csrf": session.csrf if session else "",
            "is_publisher": account is not None and account.role == PUBLISHER,
            "require_approval": self.config.require_approval,
            "live_version": self.service.version,
            "path": request.url.path,
        }
        return self.templates.TemplateResponse(
            request, template, base | context, status_code=status
        )

    def refused(self, request: Request, error: Refused) -> HTMLResponse:
        return self.render(request, "refused.html", {"message": str(error)}, error.status)


def back(request: Request, path: str, note: str = "") -> RedirectResponse:
    """303 to a UI path (after a POST), with a one-line note to show there."""
    target = request.scope.get("root_path", "") + path
    if note:
        target += ("&" if "?" in target else "?") + "note=" + quote(note)
    return RedirectResponse(target, status_code=303)


def page(ui: Ui, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A page for any signed-in account; others go to the sign-in page."""

    async def guarded(request: Request) -> Response:
        found = await ui.user(request)
        if found is None:
            wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return back(request, "/signin?next=" + quote(wanted))
        request.state.signed_in = found
        try:
            return await handler(ui, request, found[0])
        except Refused as error:
            return ui.refused(request, error)

    return guarded


def action(
    ui: Ui, handler: Handler, role: str | None = None
) -> Callable[[Request], Awaitable[Response]]:
    """A state-changing request: signed in, the session's CSRF token (form field `csrf` or
    header X-CSRF-Token), and `role` when given; else 403 and nothing changes."""

    async def guarded(request: Request) -> Response:
        found = await ui.user(request)
        if found is None:
            return HTMLResponse("sign in first", status_code=403)
        account, session = found
        request.state.signed_in = found
        given = request.headers.get("x-csrf-token")
        if given is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            given = str((await form(request)).get("csrf") or "")
        if not given or not hmac.compare_digest(given.encode(), session.csrf.encode()):
            return ui.render(
                request,
                "refused.html",
                {
                    "message": "This form has expired or did not come from this site (CSRF "
                    "check failed). Reload the page and try again."
                },
                403,
            )
        if role == PUBLISHER and account.role != PUBLISHER:
            return ui.refused(
                request, Refused(f"only a publisher can do this; {account.username} is an editor")
            )
        try:
            return await handler(ui, request, account)
        except Refused as error:
            return ui.refused(request, error)

    return guarded


async def form(request: Request) -> FormData:
    """The submitted form (parsed once per request, then cached by Starlette)."""
    return await request.form(max_files=0, max_fields=2000, max_part_size=16 * 1024 * 1024)
