"""Token → Visitor resolution, with keys and users fetched through a fake upstream."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.headers import bearer_token
from gateway.identity import Identity
from tests.tokens import JWK, ME, OTHER_KEY, signed

pytestmark = pytest.mark.anyio


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
    visitor = await Identity(upstream.get_json).visitor(signed(usr="anon-template", orderid="o-42"))
    assert visitor is not None
    assert (visitor.id, visitor.anonymous, visitor.anon_order_id) == ("anon-o-42", True, "o-42")
    assert "/v1/me" not in upstream.calls


async def test_registered_token_is_buyer_dash_user_from_me():
    upstream = FakeUpstream()
    visitor = await Identity(upstream.get_json).visitor(signed())
    assert visitor is not None
    assert visitor.id == "acme-jane"
    assert (visitor.email, visitor.language, visitor.currency) == (
        "jane@acme.example",
        "en-US",
        "USD",
    )


@pytest.mark.parametrize("role, expected", [("Shopper", ("Shopper",)), (["A", "B"], ("A", "B"))])
async def test_role_may_be_a_string_or_a_list(role, expected):
    visitor = await Identity(FakeUpstream().get_json).visitor(signed(role=role, orderid="o"))
    assert visitor is not None and visitor.roles == expected


async def test_forged_signature_is_no_visitor():
    assert await Identity(FakeUpstream().get_json).visitor(signed(key=OTHER_KEY)) is None


async def test_expired_token_is_no_visitor():
    expired = signed(exp=int(time.time()) - 3600, nbf=int(time.time()) - 7200)
    assert await Identity(FakeUpstream().get_json).visitor(expired) is None


async def test_unknown_key_is_no_visitor_and_is_remembered():
    upstream = FakeUpstream()
    identity = Identity(upstream.get_json)
    assert await identity.visitor(signed(kid="nope", orderid="o-1")) is None
    assert await identity.visitor(signed(kid="nope", orderid="o-2")) is None
    assert upstream.calls.count("/oauth/certs/nope") == 1


async def test_keys_and_users_are_cached_and_concurrent_lookups_share_one_call():
    upstream = FakeUpstream(delay=0.01)
    identity = Identity(upstream.get_json)
    t = signed()
    visitors = await asyncio.gather(*(identity.visitor(t) for _ in range(20)))
    assert {v.id for v in visitors if v} == {"acme-jane"}
    await identity.visitor(signed(usr="other"))  # new token, same key
    assert upstream.calls.count("/oauth/certs/k1") == 1
    assert upstream.calls.count("/v1/me") == 2
    assert identity.peek(t) is not None


async def test_a_caller_giving_up_does_not_cancel_the_shared_lookup():
    upstream = FakeUpstream(delay=0.05)
    identity = Identity(upstream.get_json)
    t = signed()
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


async def test_a_worker_remembers_at_most_cache_size_shoppers():
    upstream = FakeUpstream()
    identity = Identity(upstream.get_json, cache_size=2)  # OCGW_IDENTITY_CACHE
    tokens = [signed(u=str(n)) for n in range(3)]
    for token in [*tokens, tokens[2]]:
        assert await identity.visitor(token) is not None
    assert upstream.calls.count("/v1/me") == 3  # the newest two were remembered
    assert await identity.visitor(tokens[0]) is not None
    assert upstream.calls.count("/v1/me") == 4  # the oldest was not: looked up again


async def test_cached_tokens_keep_only_what_is_read_and_share_repeated_values():
    """Up to OCGW_IDENTITY_CACHE tokens stay cached: each keeps the claims the gateway reads,
    and the role list and client id many tokens repeat are stored once."""
    identity = Identity(FakeUpstream().get_json)
    roles = ["MeAdmin", "MeAddressAdmin", "Shopper", "PasswordReset"]
    first, second = (
        signed(orderid=f"order-{n}", role=roles, jti=f"jti-{n}", extra="x" * 500) for n in (1, 2)
    )
    one, two = await identity.claims(first), await identity.claims(second)
    assert one is not None and two is not None
    assert set(one) == {"cid", "usr", "orderid", "nbf", "exp", "role"}
    assert one["role"] == tuple(roles) and one["role"] is two["role"]
    assert one["cid"] is two["cid"]
    visitors = [await identity.visitor(t) for t in (first, second)]
    assert visitors[0] is not None and visitors[1] is not None
    assert visitors[0].id == visitors[0].key == "anon-order-1"
    assert visitors[0].roles is visitors[1].roles is one["role"]
