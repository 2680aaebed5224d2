"""What the admin UI needs from the settings, built once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PreviewConfig:
    """The preview shopper: an OrderCloud user whose list calls show what a rewrite returns."""

    upstream: str  # the configured OrderCloud base URL (the only host the preview calls)
    client_id: str
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class ConsoleConfig:
    session_secret: str | None  # None: one is generated and shared through the state
    session_seconds: float
    secure_cookies: bool  # the cookie is only sent over HTTPS
    require_approval: bool  # a publish needs a second publisher
    max_failures_account: int  # failed sign-ins per account within the window...
    max_failures_ip: int  # ...and per client address
    failure_window: float
    trusted_proxies: frozenset[str]  # peers whose X-Forwarded-For names the client
    preview: PreviewConfig | None
    min_visitors: int  # per variant, before the experiments page states any significance
