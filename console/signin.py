"""Signing in and out, with a shared limit on failed attempts per account and per address.

A failed attempt counts against the account name and against the client's address, in windows
kept in the state, so guesses spread over replicas count together. While either is over its
limit, sign-in is refused without checking the password (the answer is the same whether or not
the password was right, so the limit cannot be used to confirm a guess).
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from console.passwords import verify
from console.sessions import COOKIE, PATH
from console.web import Ui, back, form
from state.accounts import Account

SIGNIN_COOKIE = "ocgw_signin"  # the sign-in form's own CSRF token (there is no session yet)


def client_address(request: Request, trusted: frozenset[str]) -> str:
    peer = request.client.host if request.client else "unknown"
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded and peer in trusted:
        return forwarded.split(",")[0].strip() or peer
    return peer


def _safe_next(target: str | None, root: str) -> str:
    """Only a path inside the UI: never an open redirect to another site."""
    if not target:
        return root + "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith(root + "/") or "\\" in target:
        return root + "/"
    return target


def _signer(ui: Ui) -> URLSafeTimedSerializer:
    return ui.sessions.signer("ocgw-admin-signin")


async def show(ui: Ui, request: Request, message: str = "", status: int = 200) -> Response:
    token = secrets.token_urlsafe(18)
    response = ui.render(
        request,
        "signin.html",
        {"token": token, "message": message, "next": request.query_params.get("next", "")},
        status,
    )
    response.set_cookie(
        SIGNIN_COOKIE,
        _signer(ui).dumps(token),
        path=PATH,
        httponly=True,
        samesite="strict",
        secure=ui.sessions.secure,
        max_age=3600,
    )
    return response


async def signin_page(ui: Ui, request: Request) -> Response:
    return await show(ui, request)


async def signin(ui: Ui, request: Request) -> Response:
    config = ui.config
    submitted = await form(request)
    try:
        expected = _signer(ui).loads(request.cookies.get(SIGNIN_COOKIE, ""), max_age=3600)
    except BadSignature:
        expected = None
    given = str(submitted.get("csrf") or "")
    if not expected or not hmac.compare_digest(given.encode(), str(expected).encode()):
        return await show(ui, request, "The sign-in form expired; please try again.", 403)
    username = str(submitted.get("username") or "").strip()[:100]
    password = str(submitted.get("password") or "")[:1000]
    address = client_address(request, config.trusted_proxies)
    attempts = ui.state.attempts
    account_key, address_key = f"account:{username.lower()}", f"ip:{address}"
    if (
        await attempts.failures(account_key) >= config.max_failures_account
        or await attempts.failures(address_key) >= config.max_failures_ip
    ):
        await ui.workflow.audit(username or "?", "sign-in refused", address, "too many failures")
        return await show(
            ui, request, "Too many failed sign-ins. Wait a few minutes and try again.", 429
        )
    account = await ui.state.accounts.get(username) if username else None
    if not verify(account.password_hash if account else None, password) or account is None:
        await attempts.fail(account_key, config.failure_window)
        await attempts.fail(address_key, config.failure_window)
        await ui.workflow.audit(username or "?", "sign-in failed", address)
        return await show(ui, request, "Wrong name or password.", 401)
    await attempts.clear(account_key)
    _, cookie = ui.sessions.issue(account.username)
    await ui.workflow.audit(account.username, "signed in", address, account.role)
    root = request.scope.get("root_path", "")
    response = RedirectResponse(_safe_next(str(submitted.get("next") or ""), root), 303)
    response.set_cookie(value=cookie, **ui.sessions.cookie_options())  # type: ignore[arg-type]
    response.delete_cookie(SIGNIN_COOKIE, path=PATH)
    return response


async def signout(ui: Ui, request: Request, account: Account) -> Response:
    await ui.workflow.audit(account.username, "signed out")
    response = back(request, "/signin")
    response.delete_cookie(COOKIE, path=PATH)
    return response
