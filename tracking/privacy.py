"""What never leaves the gateway, and which requests are not tracked at all.

Secrets are removed by key *and* by shape (anything that looks like a JWT), so an OrderCloud
object that grows a new token-bearing field still cannot leak one into an event.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from gateway.headers import is_bot, user_agent

_SECRET_KEYS = frozenset(
    {
        "password",
        "newpassword",
        "currentpassword",
        "access_token",
        "accesstoken",
        "refresh_token",
        "refreshtoken",
        "id_token",
        "idtoken",
        "anonusertoken",
        "usertoken",
        "token",
        "authorization",
        "client_secret",
        "clientsecret",
    }
)
_JWT = re.compile(r"eyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*")
# Every secret key contains one of these: text without them (lower-cased) holds no secret key.
_SECRET_PARTS = (b"password", b"token", b"authorization", b"secret")


def scrub(value: Any) -> Any:
    """`value` without secret keys or JWT-shaped strings (a copy where anything was removed).

    Most values hold neither: one JSON dump and a few substring searches show that in a few
    microseconds, where walking a product's every field costs tens. Anything else (a word like
    "token" anywhere, non-ASCII text, whose case rules differ from bytes', or a value JSON cannot
    hold) takes the walk."""
    try:
        raw = orjson.dumps(value)
    except TypeError:
        return _walk(value)
    if b"eyJ" in raw or not raw.isascii():
        return _walk(value)
    lowered = raw.lower()
    if any(part in lowered for part in _SECRET_PARTS):
        return _walk(value)
    return value


def _walk(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {
            k: _walk(v)
            for k, v in value.items()
            if not (isinstance(k, str) and k.lower() in _SECRET_KEYS)
        }
    if isinstance(value, list):
        return [_walk(v) for v in value]
    if isinstance(value, str) and _JWT.search(value):
        return _JWT.sub("[redacted]", value)
    return value


def not_tracked(headers: Mapping[str, str], *, track_bots: bool, honour_gpc: bool) -> bool:
    """True for prefetches, known bots (unless tracked) and do-not-track signals (if honoured)."""
    purpose = (headers.get("sec-purpose") or headers.get("purpose") or "").lower()
    if "prefetch" in purpose:
        return True
    if not track_bots and is_bot(user_agent(headers)):
        return True
    if honour_gpc:
        if headers.get("sec-gpc", "").strip() == "1":
            return True
        if headers.get("x-tracking-consent", "").strip().lower() in {"no", "0", "false", "denied"}:
            return True
    return False
