"""RS256 access tokens, as OrderCloud issues them.

Each sandbox owns one RSA key made when the app is created, so tokens from one sandbox never verify
against another, and the gateway can exercise its real `/oauth/certs/{kid}` verification path.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ISSUER = "https://auth.ordercloud.io"
ANONYMOUS_LIFETIME = 7 * 24 * 3600  # OrderCloud fixes anonymous tokens at one week
USER_LIFETIME = 10 * 3600
ADMIN_LIFETIME = 3600


class Signer:
    """Issues and verifies this sandbox's JWTs and publishes its public key as a JWK."""

    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._public = self._key.public_key()
        self.kid = secrets.token_hex(8)

    def issue(self, claims: dict[str, Any], lifetime: int) -> str:
        """Sign `claims` with `nbf`=now and `exp`=now+lifetime."""
        now = int(time.time())
        payload = {**claims, "exp": now + lifetime, "nbf": now}
        return jwt.encode(payload, self._key, algorithm="RS256", headers={"kid": self.kid})

    def verify(self, token: str) -> dict[str, Any] | None:
        """The claims of a token this sandbox signed that is still valid, else None."""
        try:
            return jwt.decode(
                token,
                self._public,
                algorithms=["RS256"],
                options={"verify_aud": False, "require": ["exp", "nbf"]},
            )
        except jwt.PyJWTError:
            return None

    def jwk(self) -> dict[str, Any]:
        """The public key in the shape of OrderCloud's `/oauth/certs/{kid}` answer."""
        numbers = RSAAlgorithm.to_jwk(self._public, as_dict=True)
        return {
            "kty": "RSA",
            "n": numbers["n"],
            "e": numbers["e"],
            "alg": "RS256",
            "use": "sig",
            "kid": self.kid,
        }
