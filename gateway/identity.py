"""Shopper identity: who is calling, as a hint for tracking and personalization.

OrderCloud stays the authority on auth; nothing here accepts or rejects a request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jwt
from cachetools import TTLCache


@dataclass(frozen=True, slots=True)
class Visitor:
    """A shopper: `anon-{orderid}` for anonymous tokens, `{Buyer.ID}-{user ID}` for registered ones."""

    id: str
    anonymous: bool
    client_id: str | None = None
    username: str | None = None
    anon_order_id: str | None = None  # the `orderid` claim of an anonymous token
    buyer_id: str | None = None
    user_id: str | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    language: str | None = None  # from MeUser.Locale
    currency: str | None = None
    roles: tuple[str, ...] = ()
    verified: bool = False  # the token's RS256 signature was checked against OrderCloud's key


log = logging.getLogger("ocgateway.identity")

GetJson = Callable[..., Awaitable[tuple[int, Any]]]


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def unverified_claims(token: str) -> dict[str, Any] | None:
    """Decode a JWT's payload without checking it: for hints such as an anonUserToken's orderid."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False, "verify_exp": False})
    except jwt.PyJWTError:
        return None
    return claims if isinstance(claims, dict) else None


def anonymous_visitor_id(claims: dict[str, Any]) -> str | None:
    order_id = claims.get("orderid")
    return f"anon-{order_id}" if order_id else None


def _roles(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(str(role) for role in value)
    return ()


class Identity:
    """Resolves bearer tokens to Visitors, caching keys for days and users for an hour.

    RS256 keys come from the configured upstream's `/oauth/certs/{kid}` only (never from the token's
    `aud`), so a forged token cannot make the gateway call another host. A token whose signature
    fails is no visitor at all; one whose key cannot be fetched is a hint with `verified=False`.
    """

    def __init__(self, get_json: GetJson, *, verify: bool = True, me_ttl: float = 3600) -> None:
        self._get_json = get_json
        self._verify = verify
        self._keys: TTLCache[str, Any] = TTLCache(maxsize=64, ttl=3 * 86400)
        self._claims: TTLCache[str, tuple[dict[str, Any], bool] | None] = TTLCache(
            maxsize=100_000, ttl=300
        )
        self._visitors: TTLCache[str, Visitor] = TTLCache(maxsize=100_000, ttl=me_ttl)
        self._pending: dict[str, asyncio.Future[Visitor | None]] = {}

    def peek(self, token: str | None) -> Visitor | None:
        """The cached visitor for a token, without any I/O."""
        return self._visitors.get(token) if token else None

    def remember(self, token: str, visitor: Visitor) -> None:
        self._visitors[token] = visitor

    async def claims(self, token: str) -> tuple[dict[str, Any], bool] | None:
        """(claims, verified) for a live token, or None for a malformed, expired or forged one."""
        if token in self._claims:
            return self._claims[token]
        result = await self._decode(token)
        self._claims[token] = result
        return result

    async def visitor(self, token: str | None) -> Visitor | None:
        """The Visitor behind a token. Registered users need one cached `GET /v1/me`.

        Concurrent calls for one token share a single resolution, which runs as its own task so
        that a caller giving up (a latency budget) does not cancel it for the others.
        """
        if not token:
            return None
        cached = self._visitors.get(token)
        if cached is not None:
            return cached
        task = self._pending.get(token)
        if task is None:
            task = asyncio.ensure_future(self._resolve(token))
            self._pending[token] = task
            task.add_done_callback(lambda _: self._pending.pop(token, None))
        return await asyncio.shield(task)

    async def _resolve(self, token: str) -> Visitor | None:
        decoded = await self.claims(token)
        if decoded is None:
            return None
        claims, verified = decoded
        common = dict(
            client_id=claims.get("cid"),
            username=claims.get("usr"),
            roles=_roles(claims.get("role")),
            verified=verified,
        )
        anon_id = anonymous_visitor_id(claims)
        if anon_id:
            visitor = Visitor(id=anon_id, anonymous=True, anon_order_id=claims["orderid"], **common)
            self._visitors[token] = visitor
            return visitor
        status, me = await self._get_json("/v1/me", token)
        if status != 200 or not isinstance(me, dict):
            return None
        visitor = visitor_from_me(me, **common)
        self._visitors[token] = visitor
        return visitor

    async def _decode(self, token: str) -> tuple[dict[str, Any], bool] | None:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        kid = header.get("kid")
        key = await self._key(kid, token) if self._verify and kid else None
        options = {"verify_aud": False, "verify_iss": False}
        try:
            if key is not None:
                claims = jwt.decode(token, key, algorithms=["RS256"], options=options, leeway=10)
                return claims, True
            claims = jwt.decode(token, options={"verify_signature": False, **options})
        except jwt.ExpiredSignatureError:
            return None
        except jwt.PyJWTError:
            return None
        exp = claims.get("exp")
        if isinstance(exp, (int, float)) and exp < time.time() - 10:
            return None
        return claims, False

    async def _key(self, kid: str, token: str) -> Any:
        if kid in self._keys:
            return self._keys[kid]
        try:
            status, jwk = await self._get_json(f"/oauth/certs/{kid}", token, timeout=5.0)
            key = jwt.PyJWK(jwk).key if status == 200 and isinstance(jwk, dict) else None
        except Exception as exc:  # unreachable upstream or a malformed key: identity stays a hint
            log.warning("could not fetch signing key %s: %s", kid, type(exc).__name__)
            return None
        if key is not None:
            self._keys[kid] = key
        return key


def visitor_from_me(me: dict[str, Any], **token_facts: Any) -> Visitor:
    """A registered Visitor from an OrderCloud MeUser: `{Buyer.ID}-{user ID}`."""
    buyer = (me.get("Buyer") or {}).get("ID")
    locale = me.get("Locale") or {}
    return Visitor(
        id=f"{buyer}-{me.get('ID')}",
        anonymous=False,
        buyer_id=buyer,
        user_id=me.get("ID"),
        email=me.get("Email"),
        first_name=me.get("FirstName"),
        last_name=me.get("LastName"),
        phone=me.get("Phone"),
        language=locale.get("Language"),
        currency=locale.get("Currency"),
        **token_facts,
    )
