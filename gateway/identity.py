"""Shopper identity: who is calling, for tracking and personalization, from verified tokens only.

OrderCloud stays the authority on auth; nothing here accepts or rejects a request. But a shopper
the gateway records or personalizes for must be one OrderCloud issued a token to: identity comes
only from an RS256 token whose signature verifies with a key from the configured upstream's
`/oauth/certs/{kid}`, and only while `nbf <= now < exp`. Any other token (unsigned, HS256, an
unknown or malformed `kid`, expired, oversized) is no visitor at all.

Every cache here is keyed by a digest of client input, never the input itself, and bounded in
entries, so its memory has a fixed ceiling whatever clients send.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jwt
from cachetools import LRUCache, TTLCache

log = logging.getLogger("ocgateway.identity")

GetJson = Callable[..., Awaitable[tuple[int, Any]]]

MAX_TOKEN_BYTES = 8192  # OrderCloud tokens are about 1 KB; anything far larger is not one
_KID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_NBF_LEEWAY = 30.0  # seconds a token may be early (clock skew); expiry gets no leeway


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
    key: str | None = None  # ordering key: the same for every token of this shopper


@dataclass(frozen=True, slots=True)
class _Known:
    """A verified token's claims (or its visitor) and the window in which they may be used."""

    value: Any
    not_before: float
    expires: float

    def usable(self, now: float) -> bool:
        return self.not_before - _NBF_LEEWAY <= now < self.expires


IDENTIFIER_PROVIDER = "ordercloud"


def guest_identifier(visitor_id: str) -> dict[str, str]:
    """How Sitecore knows a registered shopper: the `ordercloud` identifier `{Buyer.ID}-{user ID}`.

    IDENTITY events, callFlows requests and backfilled orders all name the guest this way, so CDP
    resolves them to one guest."""
    return {"provider": IDENTIFIER_PROVIDER, "id": visitor_id}


def anonymous_visitor_id(claims: dict[str, Any]) -> str | None:
    """`anon-{orderid}` for an anonymous shopper's token claims, else None."""
    order_id = claims.get("orderid")
    return f"anon-{order_id}" if isinstance(order_id, str) and order_id else None


def shopper_key(claims: dict[str, Any]) -> str | None:
    """A verified shopper's ordering key, known without I/O: `anon-{orderid}`, or `user:{usr}`
    for a registered user (every token of theirs names the same username)."""
    anon = anonymous_visitor_id(claims)
    if anon:
        return anon
    user = claims.get("usr")
    return f"user:{user[:256]}" if isinstance(user, str) and user else None


def _digest(token: str) -> bytes:
    return hashlib.blake2b(token.encode("utf-8", "surrogatepass"), digest_size=16).digest()


_CLAIMS_KEPT = ("cid", "usr", "orderid", "nbf", "exp")  # with `role`: all the gateway reads
_SHARED = 1024  # distinct role lists and client ids kept as one copy each


def _roles(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(str(role) for role in value)
    return ()


class KeyFetchLimit:
    """At most `burst` signing-key fetches at once, refilled at `per_second`: a flood of tokens
    naming new kids costs the upstream a trickle of calls, not one each."""

    def __init__(
        self, per_second: float = 2.0, burst: int = 10, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.per_second = per_second
        self.burst = burst
        self.clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def take(self) -> bool:
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.per_second)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


CACHE_SIZE = 50_000  # verified tokens (and, separately, their shoppers) kept per process


class Identity:
    """Resolves bearer tokens to Visitors: keys cached for days, unknown kids remembered for
    minutes, verified tokens and their visitors until the token expires."""

    def __init__(
        self,
        get_json: GetJson,
        *,
        cache_size: int = CACHE_SIZE,
        unknown_kid_ttl: float = 600.0,
        key_fetches: KeyFetchLimit | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._get_json = get_json
        self._clock = clock
        self._keys: TTLCache[str, Any] = TTLCache(maxsize=64, ttl=3 * 86400)
        self._unknown_kids: TTLCache[str, bool] = TTLCache(maxsize=10_000, ttl=unknown_kid_ttl)
        self._key_fetches = key_fetches or KeyFetchLimit()
        self._fetching: dict[str, asyncio.Future[Any]] = {}
        self._claims: LRUCache[bytes, _Known] = LRUCache(maxsize=cache_size)
        self._visitors: LRUCache[bytes, _Known] = LRUCache(maxsize=cache_size)
        # Thousands of cached tokens repeat a handful of role lists and client ids: one copy each.
        self._shared: LRUCache[object, Any] = LRUCache(maxsize=_SHARED)
        self._pending: dict[bytes, asyncio.Future[Visitor | None]] = {}

    @property
    def sizes(self) -> dict[str, int]:
        """Entries per cache: every one is bounded (the security tests read this)."""
        return {
            "claims": len(self._claims),
            "visitors": len(self._visitors),
            "keys": len(self._keys),
            "unknown_kids": len(self._unknown_kids),
            "shared": len(self._shared),
            "pending": len(self._pending) + len(self._fetching),
        }

    def peek(self, token: str | None) -> Visitor | None:
        """The cached visitor for a still-valid token, without any I/O."""
        if not token or len(token) > MAX_TOKEN_BYTES:
            return None
        known = self._visitors.get(_digest(token))
        return known.value if known is not None and known.usable(self._clock()) else None

    async def claims(self, token: str | None) -> dict[str, Any] | None:
        """The claims the gateway reads (`_CLAIMS_KEPT`, and `role` as a tuple) of a token
        OrderCloud signed and that is valid now, else None. Only those are cached: a whole
        claims set cost about 2 KB per token, and the cache holds up to `cache_size` tokens."""
        if not token or len(token) > MAX_TOKEN_BYTES:
            return None
        key = _digest(token)
        known = self._claims.get(key)
        if known is None:
            claims = await self._verify(token)
            if claims is None:
                return None
            kept = {name: claims[name] for name in _CLAIMS_KEPT if name in claims}
            kept["role"] = self._one_copy(_roles(claims.get("role")))
            if isinstance(kept.get("cid"), str):
                kept["cid"] = self._one_copy(kept["cid"])
            known = _Known(kept, _number(kept.get("nbf"), 0.0), _number(kept.get("exp"), 0.0))
            self._claims[key] = known
        return known.value if known.usable(self._clock()) else None

    async def visitor(self, token: str | None) -> Visitor | None:
        """The Visitor behind a token. Registered users need one cached `GET /v1/me`.

        Concurrent calls for one token share a single resolution, which runs as its own task so
        that a caller giving up (a latency budget) does not cancel it for the others.
        """
        if not token or len(token) > MAX_TOKEN_BYTES:
            return None
        key = _digest(token)
        known = self._visitors.get(key)
        if known is not None:
            return known.value if known.usable(self._clock()) else None
        task = self._pending.get(key)
        if task is None:
            task = asyncio.ensure_future(self._resolve(token, key))
            self._pending[key] = task
            task.add_done_callback(lambda _: self._pending.pop(key, None))
        return await asyncio.shield(task)

    async def _resolve(self, token: str, key: bytes) -> Visitor | None:
        claims = await self.claims(token)
        if claims is None:
            return None
        anon_id = anonymous_visitor_id(claims)
        common = dict(
            client_id=_text(claims.get("cid")),
            username=_text(claims.get("usr")),
            roles=claims["role"],
            key=anon_id or shopper_key(claims),  # one string for both, as for the role list
        )
        if anon_id:
            visitor = Visitor(id=anon_id, anonymous=True, anon_order_id=claims["orderid"], **common)
        else:
            status, me = await self._get_json("/v1/me", token)
            if status != 200 or not isinstance(me, dict):
                return None
            visitor = visitor_from_me(me, **common)
        self._visitors[key] = _Known(
            visitor, _number(claims.get("nbf"), 0.0), _number(claims.get("exp"), 0.0)
        )
        return visitor

    def _one_copy(self, value: Any) -> Any:
        return self._shared.setdefault(value, value)

    async def _verify(self, token: str) -> dict[str, Any] | None:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        kid = header.get("kid")
        if header.get("alg") != "RS256" or not isinstance(kid, str) or not _KID.fullmatch(kid):
            return None
        key = await self._key(kid, token)
        if key is None:
            return None
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                options={"verify_aud": False, "verify_iss": False, "require": ["exp"]},
                leeway=_NBF_LEEWAY,  # nbf only: `usable` checks exp without leeway at every use
            )
        except jwt.PyJWTError:
            return None
        return claims if isinstance(claims, dict) else None

    async def _key(self, kid: str, token: str) -> Any:
        if kid in self._keys:
            return self._keys[kid]
        if kid in self._unknown_kids:
            return None
        fetching = self._fetching.get(kid)
        if fetching is None:
            if not self._key_fetches.take():
                return None  # over the rate: no identity for now, nothing remembered
            fetching = asyncio.ensure_future(self._fetch_key(kid, token))
            self._fetching[kid] = fetching
            fetching.add_done_callback(lambda _: self._fetching.pop(kid, None))
        return await asyncio.shield(fetching)

    async def _fetch_key(self, kid: str, token: str) -> Any:
        try:
            status, jwk = await self._get_json(f"/oauth/certs/{kid}", token, timeout=5.0)
        except Exception as exc:  # unreachable upstream: try again on a later call
            log.warning("could not fetch signing key: %s", type(exc).__name__)
            return None
        key = None
        if status == 200 and isinstance(jwk, dict):
            try:
                key = jwt.PyJWK(jwk, algorithm="RS256").key
            except jwt.PyJWTError:
                key = None
        if key is None:
            if status < 500:  # OrderCloud does not know it: remember that for a while
                self._unknown_kids[kid] = True
            return None
        self._keys[kid] = key
        return key


def _number(value: object, default: float) -> float:
    return (
        float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default
    )


def _text(value: object) -> str | None:
    return value[:256] if isinstance(value, str) else None


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
