"""Token → Visitor resolution, with keys and users fetched through a fake upstream."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.identity import Identity, bearer_token, unverified_claims

pytestmark = pytest.mark.anyio

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
JWK = {
    **jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key(), as_dict=True),
    "kid": "k1",
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


def token(key: Any = KEY, kid: str | None = "k1", **claims: Any) -> str:
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


class FakeUpstream:
    def __init__(self, delay: float = 0) -> None:
        self.calls: list[str] = []
        self.delay = delay

    async def get_json(self, path: str, token: str | None, timeout: float | None = None):
        self.calls.append(path)
        await asyncio.sleep(self.delay)
        if path == "/oauth/certs/k1":
            return 200, JWK
        if path == "/v1/me":
            return 200, ME
        return 404, None


async def test_anonymous_token_is_anon_orderid_without_calling_me():
    upstream = FakeUpstream()
    visitor = await Identity(upstream.get_json).visitor(token(usr="anon-template", orderid="o-42"))
    assert visitor is not None
    assert (visitor.id, visitor.anonymous, visitor.anon_order_id, visitor.verified) == (
        "anon-o-42",
        True,
        "o-42",
        True,
    )
    assert "/v1/me" not in upstream.calls


async def test_registered_token_is_buyer_dash_user_from_me():
    upstream = FakeUpstream()
    visitor = await Identity(upstream.get_json).visitor(token())
    assert visitor is not None
    assert visitor.id == "acme-jane"
    assert (visitor.email, visitor.language, visitor.currency) == (
        "jane@acme.example",
        "en-US",
        "USD",
    )


@pytest.mark.parametrize("role, expected", [("Shopper", ("Shopper",)), (["A", "B"], ("A", "B"))])
async def test_role_may_be_a_string_or_a_list(role, expected):
    visitor = await Identity(FakeUpstream().get_json).visitor(token(role=role, orderid="o"))
    assert visitor is not None and visitor.roles == expected


async def test_forged_signature_is_no_visitor():
    assert await Identity(FakeUpstream().get_json).visitor(token(key=OTHER_KEY)) is None


async def test_expired_token_is_no_visitor():
    expired = token(exp=int(time.time()) - 3600, nbf=int(time.time()) - 7200)
    assert await Identity(FakeUpstream().get_json).visitor(expired) is None


async def test_unknown_key_leaves_an_unverified_hint():
    visitor = await Identity(FakeUpstream().get_json).visitor(token(kid="nope", orderid="o-1"))
    assert visitor is not None and visitor.id == "anon-o-1" and not visitor.verified


async def test_keys_and_users_are_cached_and_concurrent_lookups_share_one_call():
    upstream = FakeUpstream(delay=0.01)
    identity = Identity(upstream.get_json)
    t = token()
    visitors = await asyncio.gather(*(identity.visitor(t) for _ in range(20)))
    assert {v.id for v in visitors if v} == {"acme-jane"}
    await identity.visitor(token(usr="other"))  # new token, same key
    assert upstream.calls.count("/oauth/certs/k1") == 1
    assert upstream.calls.count("/v1/me") == 2
    assert identity.peek(t) is not None


async def test_a_caller_giving_up_does_not_cancel_the_shared_lookup():
    upstream = FakeUpstream(delay=0.05)
    identity = Identity(upstream.get_json)
    t = token()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(identity.visitor(t), 0.01)
    visitor = await identity.visitor(t)
    assert visitor is not None and visitor.id == "acme-jane"
    assert upstream.calls.count("/v1/me") == 1


def test_bearer_token_parsing():
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Bearer ") is None
    assert bearer_token("Basic abc") is None
    assert bearer_token(None) is None


def test_unverified_claims_reads_an_anon_user_token():
    assert unverified_claims(token(orderid="o-9"))["orderid"] == "o-9"
    assert unverified_claims("not-a-jwt") is None
