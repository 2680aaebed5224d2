"""Signed session cookies: who is signed in and their CSRF token, nothing else.

The cookie is HttpOnly (scripts cannot read it), SameSite=Strict (other sites' pages never send
it) and limited to /admin. Its signature (itsdangerous, HMAC) carries the issue time, so a cookie
older than the session lifetime is refused. The account is looked up on every request, so a
removed account or a changed role applies at once.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE = "ocgw_session"
PATH = "/admin"


@dataclass(frozen=True, slots=True)
class Session:
    username: str
    csrf: str


class Sessions:
    def __init__(self, secret: str, max_age: float, secure: bool) -> None:
        self._secret = secret
        self._signer = self.signer("ocgw-admin-session")
        self.max_age = max_age
        self.secure = secure

    def signer(self, salt: str) -> URLSafeTimedSerializer:
        """A signer for another purpose (`salt`), so its tokens never pass as a session."""
        return URLSafeTimedSerializer(self._secret, salt=salt)

    def issue(self, username: str) -> tuple[Session, str]:
        session = Session(username, secrets.token_urlsafe(24))
        return session, self._signer.dumps([session.username, session.csrf])

    def read(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        try:
            username, csrf = self._signer.loads(cookie, max_age=self.max_age)
        except (BadSignature, ValueError, TypeError):
            return None
        return Session(str(username), str(csrf))

    def cookie_options(self) -> dict[str, object]:
        return {
            "key": COOKIE,
            "path": PATH,
            "httponly": True,
            "samesite": "strict",
            "secure": self.secure,
            "max_age": int(self.max_age),
        }
