"""Buyer users: seeded ones, anonymous templates, and those created by `PUT /v1/me/register`."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .catalog import (
    ANONYMOUS_ROLES,
    BUYERS,
    CATALOG_ID,
    SELLER_ID,
    SHOPPER_ROLES,
    USERS,
    Buyer,
    iso,
)
from .errors import ApiError


@dataclass(slots=True)
class User:
    buyer_id: str
    id: str
    username: str
    password: str | None
    first_name: str
    last_name: str
    email: str | None
    phone: str | None
    roles: tuple[str, ...]
    internal_id: str  # the `u` claim: OrderCloud's database id, distinct from ID
    date_created: str
    anonymous_template: bool = False
    xp: Any = None


class Directory:
    """Users and buyers of one sandbox."""

    def __init__(self) -> None:
        self.buyers: dict[str, Buyer] = {buyer.id: buyer for buyer in BUYERS}
        self._by_username: dict[str, User] = {}
        self._by_internal_id: dict[str, User] = {}
        created = iso(datetime(2025, 1, 2, tzinfo=UTC))
        for seed in USERS:
            self._add(
                User(
                    buyer_id=seed.buyer_id,
                    id=seed.username,
                    username=seed.username,
                    password=seed.password,
                    first_name=seed.first_name,
                    last_name=seed.last_name,
                    email=seed.email,
                    phone=None,
                    roles=ANONYMOUS_ROLES if seed.anonymous_template else SHOPPER_ROLES,
                    internal_id=str(1_000_001 + len(self._by_username)),
                    date_created=created,
                    anonymous_template=seed.anonymous_template,
                )
            )

    def _add(self, user: User) -> None:
        self._by_username[user.username.casefold()] = user
        self._by_internal_id[user.internal_id] = user

    def by_username(self, username: str) -> User | None:
        return self._by_username.get(username.casefold())

    def by_internal_id(self, internal_id: str) -> User | None:
        return self._by_internal_id.get(internal_id)

    def authenticate(self, username: str, password: str) -> User | None:
        """The user with these credentials; anonymous templates cannot log in."""
        user = self.by_username(username)
        if user is None or user.password is None or user.anonymous_template:
            return None
        if not hmac.compare_digest(user.password.encode(), password.encode()):
            return None
        return user

    def register(self, buyer_id: str, body: dict[str, Any]) -> User:
        """Create a shopper from a MeUser body, as `PUT /v1/me/register` does."""
        missing = [
            name
            for name in ("Username", "FirstName", "LastName", "Email")
            if not isinstance(body.get(name), str) or not body[name].strip()
        ]
        if missing:
            raise ApiError(
                400, "ValidationFailure", f"Required: {', '.join(missing)}.", {"Fields": missing}
            )
        username = body["Username"].strip()
        if self.by_username(username) is not None:
            raise ApiError(
                409,
                "IdExists",
                f"Username already in use: {username}",
                {"ObjectType": "User", "ObjectID": username},
            )
        user_id = body.get("ID") if isinstance(body.get("ID"), str) and body["ID"] else None
        password = body.get("Password") if isinstance(body.get("Password"), str) else None
        user = User(
            buyer_id=buyer_id,
            id=user_id or secrets.token_urlsafe(16),
            username=username,
            password=password or None,
            first_name=body["FirstName"],
            last_name=body["LastName"],
            email=body["Email"],
            phone=body.get("Phone") if isinstance(body.get("Phone"), str) else None,
            roles=SHOPPER_ROLES,
            internal_id=str(1_000_001 + len(self._by_username)),
            date_created=iso(datetime.now(UTC)),
            xp=body.get("xp"),
        )
        self._add(user)
        return user

    def me_user(self, user: User) -> dict[str, Any]:
        """The MeUser `GET /v1/me` answers with (never the password)."""
        buyer = self.buyers[user.buyer_id]
        return {
            "Buyer": {"ID": buyer.id, "DefaultCatalogID": CATALOG_ID},
            "Supplier": None,
            "Seller": None,
            "ID": user.id,
            "CompanyID": buyer.id,
            "Username": user.username,
            "Password": None,
            "FirstName": user.first_name,
            "LastName": user.last_name,
            "Email": user.email,
            "Phone": user.phone,
            "TermsAccepted": None,
            "Active": True,
            "xp": user.xp,
            "AvailableRoles": list(user.roles),
            "Locale": {
                "ID": f"{buyer.id}-{buyer.language}",
                "OwnerID": SELLER_ID,
                "Currency": buyer.currency,
                "Language": buyer.language,
            },
            "DateCreated": user.date_created,
            "LastActive": None,
            "PasswordLastSetDate": user.date_created if user.password else None,
        }

    def order_user(self, user: User) -> dict[str, Any]:
        """The OrderUser an Order carries as FromUser."""
        me = self.me_user(user)
        for name in ("Buyer", "Supplier", "Seller"):
            me.pop(name)
        return me


@dataclass(frozen=True, slots=True)
class Shopper:
    """The caller of a /v1 route: the user a verified token names, plus its claims."""

    user: User
    claims: dict[str, Any]

    @property
    def anonymous_order_id(self) -> str | None:
        """The `orderid` claim: present only on anonymous tokens."""
        value = self.claims.get("orderid")
        return value if isinstance(value, str) else None

    @property
    def owner(self) -> str:
        """Who owns this shopper's orders: one anonymous session, or one registered user."""
        if self.anonymous_order_id is not None:
            return f"anon:{self.anonymous_order_id}"
        return f"user:{self.user.buyer_id}:{self.user.id}"
