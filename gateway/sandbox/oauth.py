"""`POST /oauth/token`: password, anonymous (client credentials, no secret), refresh grants, and
client credentials with a secret for the admin client."""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from .catalog import API_CLIENTS
from .errors import ApiError
from .tokens import ADMIN_LIFETIME, ANONYMOUS_LIFETIME, ISSUER, USER_LIFETIME, Signer
from .users import Directory, User


def _auth_error(code: str, message: str, oauth: str = "invalid_grant") -> ApiError:
    return ApiError(400, code, message, None, oauth=oauth)


class OAuth:
    """Issues this sandbox's tokens and remembers its refresh tokens."""

    def __init__(self, signer: Signer, directory: Directory) -> None:
        self._signer = signer
        self._directory = directory
        self._clients = {client.id.casefold(): client for client in API_CLIENTS}
        self._refresh: dict[str, tuple[str, str, tuple[str, ...]]] = {}  # token -> cid, u, roles

    def grant(self, form: dict[str, str], audience: str) -> dict[str, Any]:
        """Answer a token request (decoded form fields), or raise an OAuth-shaped ApiError."""
        grant_type = form.get("grant_type", "")
        client_id = form.get("client_id", "")
        client = self._clients.get(client_id.casefold())
        if grant_type not in ("password", "client_credentials", "refresh_token"):
            raise _auth_error(
                "Auth.OauthError",
                f"Unsupported grant_type: {grant_type or '(none)'}",
                "unsupported_grant_type",
            )
        if client is None:
            raise _auth_error("Auth.InvalidClientID", "Invalid client_id.", "invalid_client")
        if client.secret is not None:
            return self._admin(client.id, client.secret, form, audience)
        if grant_type == "password":
            username, password = form.get("username", ""), form.get("password", "")
            if not username or not password:
                raise _auth_error(
                    "Auth.UsernameAndPasswordRequired", "Username and password are required."
                )
            user = self._directory.authenticate(username, password)
            if user is None:
                raise _auth_error("Auth.InvalidUsernameOrPassword", "Invalid username or password.")
            return self.issue(user, client.id, audience, form.get("scope", ""))
        if grant_type == "client_credentials":
            template = self._directory.by_username(client.anonymous_username or "")
            if template is None:
                raise _auth_error(
                    "Auth.AnonUserProhibited",
                    "Default context user required for client credentials grant.",
                )
            return self.issue(template, client.id, audience, form.get("scope", ""), anonymous=True)
        return self._refreshed(form.get("refresh_token", ""), client.id, audience)

    def _admin(
        self, client_id: str, secret: str, form: dict[str, str], audience: str
    ) -> dict[str, Any]:
        """A seller-side token for a client with a secret: the secret is required, as in
        OrderCloud, and only the client credentials grant is offered (no user, no refresh)."""
        given = form.get("client_secret", "")
        if not given or not hmac.compare_digest(given.encode(), secret.encode()):
            raise _auth_error(
                "Auth.InvalidClientSecret", "Invalid client_secret.", "invalid_client"
            )
        if form.get("grant_type") != "client_credentials":
            raise _auth_error(
                "Auth.OauthError", "This client only supports the client_credentials grant."
            )
        claims = {
            "cid": client_id,
            "usrtype": "admin",
            "role": ["FullAccess"],
            "iss": ISSUER,
            "aud": audience,
        }
        return {
            "access_token": self._signer.issue(claims, ADMIN_LIFETIME),
            "token_type": "bearer",
            "expires_in": ADMIN_LIFETIME,
            "refresh_token": None,
        }

    def issue(
        self, user: User, client_id: str, audience: str, scope: str = "", anonymous: bool = False
    ) -> dict[str, Any]:
        """A token response for `user`; an anonymous one has a fresh `orderid`, no refresh token."""
        roles = _roles(user.roles, scope)
        claims: dict[str, Any] = {
            "usr": user.username,
            "cid": client_id,
            "u": user.internal_id,
            "usrtype": "buyer",
            "role": list(roles),
            "iss": ISSUER,
            "aud": audience,
        }
        lifetime = ANONYMOUS_LIFETIME if anonymous else USER_LIFETIME
        refresh = None
        if anonymous:
            claims["orderid"] = secrets.token_urlsafe(16)
        else:
            refresh = secrets.token_urlsafe(24)
            self._refresh[refresh] = (client_id, user.internal_id, roles)
        return {
            "access_token": self._signer.issue(claims, lifetime),
            "token_type": "bearer",
            "expires_in": lifetime,
            "refresh_token": refresh,
        }

    def _refreshed(self, refresh_token: str, client_id: str, audience: str) -> dict[str, Any]:
        entry = self._refresh.get(refresh_token)
        if entry is None or entry[0] != client_id:
            raise _auth_error("Auth.TokenRevoked", "Refresh token is invalid or expired.")
        user = self._directory.by_internal_id(entry[1])
        if user is None:
            raise _auth_error("Auth.TokenRevoked", "Refresh token is invalid or expired.")
        response = self.issue(user, client_id, audience, " ".join(entry[2]))
        del self._refresh[response["refresh_token"]]  # keep the caller's refresh token working
        response["refresh_token"] = refresh_token
        return response


def _roles(available: tuple[str, ...], scope: str) -> tuple[str, ...]:
    """The roles a token carries: the requested ones the user has (all of them if none match)."""
    requested = {role.casefold() for role in scope.split()}
    if "fullaccess" in requested:
        return available
    granted = tuple(role for role in available if role.casefold() in requested)
    return granted or available
