"""The benchmark's stand-in for OrderCloud's token signing: a key, its JWK, and a buyer token."""

from __future__ import annotations

import time
from typing import Any


def signing_key() -> Any:
    """A fresh RSA key standing in for OrderCloud's token-signing key."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: Any, kid: str = "k1") -> dict[str, Any]:
    """The JWK `/oauth/certs/{kid}` serves for `key`."""
    import jwt

    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwk.update({"kid": kid, "alg": "RS256", "use": "sig"})
    return jwk


def buyer_token(key: Any, audience: str, kid: str = "k1") -> str:
    """A registered buyer's RS256 token with OrderCloud's claims; `aud` is the API base URL."""
    import jwt

    now = int(time.time())
    claims = {
        "usr": "jane@example.com",
        "cid": "bench-storefront-client",
        "u": "1920563",
        "usrtype": "buyer",
        "role": ["Shopper", "MeAdmin"],
        "iss": "https://auth.ordercloud.io",
        "aud": audience,
        "exp": now + 7 * 24 * 3600,
        "nbf": now - 60,
    }
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})
