"""One RS256 signing key for the tests, and OrderCloud-shaped tokens signed with it.

Fakes serve `JWK` at `/oauth/certs/{KID}`, as OrderCloud does, so the gateway's real verification
path runs; `forged` makes the tokens an attacker would send.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

KID = "k1"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
JWK = {
    **jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key(), as_dict=True),
    "kid": KID,
    "alg": "RS256",
}
ME = {
    "ID": "jane",
    "Username": "jane",
    "Email": "jane@acme.example",
    "FirstName": "Jane",
    "Buyer": {"ID": "acme"},
    "Locale": {"Language": "en-US", "Currency": "USD"},
}


def signed(key: Any = KEY, kid: str | None = KID, **claims: Any) -> str:
    """A buyer token as OrderCloud issues it (RS256, `kid` header), valid for ten minutes."""
    now = int(time.time())
    payload = {
        "usr": "jane",
        "cid": "client-1",
        "usrtype": "buyer",
        "role": ["Shopper"],
        "iss": "https://auth.ordercloud.io",
        "aud": "http://upstream",
        "nbf": now,
        "exp": now + 600,
        **claims,
    }
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid} if kid else None)


def unsigned(**claims: Any) -> str:
    """`alg: none`, no signature: what a forger sends first."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part({'exp': int(time.time()) + 600, **claims})}."


def hs256(**claims: Any) -> str:
    """Signed with a secret the attacker chose."""
    return jwt.encode({"exp": int(time.time()) + 600, **claims}, "k" * 32, algorithm="HS256")
