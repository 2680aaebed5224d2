"""Shopper identity: who is calling, as a hint for tracking and personalization.

OrderCloud stays the authority on auth; nothing here accepts or rejects a request.
"""

from __future__ import annotations

from dataclasses import dataclass


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
