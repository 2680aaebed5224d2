"""A sandbox shopper logging in as a storefront does: OrderCloud's password grant.

One helper instead of a copy in every module that needs a buyer token. Sandbox shoppers' passwords
are `{username}-pass`.
"""

from __future__ import annotations

import httpx

from gateway.sandbox.catalog import CLIENT_ID


def password_grant(
    username: str, password: str | None = None, scope: str = "Shopper"
) -> dict[str, str]:
    """The form of the password grant for a sandbox shopper."""
    return {
        "grant_type": "password",
        "client_id": CLIENT_ID,
        "username": username,
        "password": password or f"{username}-pass",
        "scope": scope,
    }


def login(base: str, username: str, *, http: httpx.Client | None = None) -> str:
    """The shopper's access token from the sandbox, or from a gateway in front of it."""
    post = http.post if http is not None else httpx.post
    answer = post(f"{base}/oauth/token", data=password_grant(username))
    answer.raise_for_status()
    return str(answer.json()["access_token"])


async def login_async(
    http: httpx.AsyncClient, username: str, password: str | None = None, scope: str = "Shopper"
) -> str:
    """The same with an async client whose base URL is the sandbox (or a gateway)."""
    answer = await http.post("/oauth/token", data=password_grant(username, password, scope))
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
