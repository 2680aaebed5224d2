"""The local OrderCloud sandbox over HTTP: tokens, me, catalog lists, errors, routing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import jwt
import pytest
from jwt.algorithms import RSAAlgorithm

from gateway.sandbox import create_app
from gateway.sandbox.catalog import CLIENT_ID, GINA, GLOBEX_CLIENT_ID, JANE, JOE, PRODUCT_COUNT

pytestmark = pytest.mark.anyio
BASE = "http://sandbox.test"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
        yield http


async def password_token(
    client: httpx.AsyncClient, username: str, password: str, client_id: str = CLIENT_ID
) -> dict:
    response = await client.post(
        "/oauth/token",
        data={
            "grant_type": "password",
            "username": username,
            "password": password,
            "client_id": client_id,
            "scope": "Shopper MeAdmin",
        },
    )
    assert response.status_code == 200, response.text
    return response.json()


async def anonymous_token(client: httpx.AsyncClient, client_id: str = CLIENT_ID) -> dict:
    response = await client.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "scope": "Shopper",
            "anonuserid": "beacon-123",
        },
    )
    assert response.status_code == 200, response.text
    return response.json()


def bearer(token: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {token['access_token']}"}


async def login(client: httpx.AsyncClient, username: str, password: str) -> dict[str, str]:
    return bearer(await password_token(client, username, password))


def claims(token: dict) -> dict:
    return jwt.decode(token["access_token"], options={"verify_signature": False})


# OAuth -------------------------------------------------------------------------------------


async def test_password_grant_issues_a_buyer_token_with_refresh(client) -> None:
    token = await password_token(client, JANE.username, JANE.password)
    assert token["token_type"] == "bearer"
    assert token["expires_in"] > 0 and token["refresh_token"]
    payload = claims(token)
    assert (
        payload["usr"] == "jane" and payload["cid"] == CLIENT_ID and payload["usrtype"] == "buyer"
    )
    assert payload["role"] == ["Shopper", "MeAdmin"]
    assert payload["iss"] == "https://auth.ordercloud.io" and payload["aud"] == BASE
    assert payload["u"] and "orderid" not in payload
    assert payload["nbf"] <= time.time() < payload["exp"]


async def test_anonymous_grant_has_orderid_lasts_a_week_and_no_refresh(client) -> None:
    first, second = await anonymous_token(client), await anonymous_token(client)
    assert first["refresh_token"] is None
    assert first["expires_in"] == 7 * 24 * 3600
    one, two = claims(first), claims(second)
    assert one["orderid"] and one["orderid"] != two["orderid"]
    assert one["usr"] == "anon-template" and isinstance(one["role"], list)
    assert one["exp"] - one["nbf"] == 7 * 24 * 3600


async def test_token_signature_verifies_with_the_published_jwk(client) -> None:
    token = await password_token(client, JOE.username, JOE.password)
    kid = jwt.get_unverified_header(token["access_token"])["kid"]
    response = await client.get(f"/oauth/certs/{kid}")
    assert response.status_code == 200
    jwk = response.json()
    assert set(jwk) == {"kty", "n", "e", "alg", "use", "kid"} and jwk["kid"] == kid
    key = RSAAlgorithm.from_jwk(jwk)
    verified = jwt.decode(token["access_token"], key, algorithms=["RS256"], audience=BASE)
    assert verified["usr"] == "joe"
    missing = await client.get("/oauth/certs/not-a-kid")
    assert missing.status_code == 404
    assert missing.json()["Errors"][0]["Data"] == {
        "ObjectType": "PublicKey",
        "ObjectID": "not-a-kid",
    }


async def test_configured_base_url_is_the_audience() -> None:
    transport = httpx.ASGITransport(app=create_app("http://127.0.0.1:8123/"))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
        token = await password_token(http, JOE.username, JOE.password)
    assert claims(token)["aud"] == "http://127.0.0.1:8123"


async def test_refresh_grant_gives_a_new_access_token(client) -> None:
    token = await password_token(client, JANE.username, JANE.password)
    response = await client.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "client_id": CLIENT_ID,
            "refresh_token": token["refresh_token"],
        },
    )
    assert response.status_code == 200
    refreshed = response.json()
    assert claims(refreshed)["usr"] == "jane"
    me = await client.get("/v1/me", headers=bearer(refreshed))
    assert me.json()["Username"] == "jane"
    bad = await client.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "client_id": CLIENT_ID, "refresh_token": "nope"},
    )
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("form", "error", "code"),
    [
        (
            {"grant_type": "password", "username": "jane", "password": "wrong"},
            "invalid_grant",
            "Auth.InvalidUsernameOrPassword",
        ),
        (
            {"grant_type": "password", "username": "nobody", "password": "x"},
            "invalid_grant",
            "Auth.InvalidUsernameOrPassword",
        ),
        (
            {"grant_type": "password", "username": "anon-template", "password": "x"},
            "invalid_grant",
            "Auth.InvalidUsernameOrPassword",
        ),
        (
            {"grant_type": "password", "username": "jane"},
            "invalid_grant",
            "Auth.UsernameAndPasswordRequired",
        ),
        (
            {
                "grant_type": "password",
                "username": "jane",
                "password": "jane-pass",
                "client_id": "bogus",
            },
            "invalid_client",
            "Auth.InvalidClientID",
        ),
        ({"grant_type": "magic"}, "unsupported_grant_type", "Auth.OauthError"),
    ],
)
async def test_token_errors_have_oauth_and_ordercloud_fields(client, form, error, code) -> None:
    response = await client.post("/oauth/token", data={"client_id": CLIENT_ID, **form})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == error and body["error_description"]
    assert body["Errors"][0]["ErrorCode"] == code


# Auth on /v1 -------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "Bearer ", "Bearer not.a.jwt", "Basic abc"])
async def test_missing_or_invalid_token_is_401(client, header) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = await client.get("/v1/me/products", headers=headers)
    assert response.status_code == 401
    assert response.json() == {
        "Errors": [
            {
                "ErrorCode": "InvalidToken",
                "Message": "Access token is invalid or expired.",
                "Data": None,
            }
        ]
    }


async def test_token_from_another_sandbox_is_rejected(client) -> None:
    other = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=other, base_url=BASE) as http:
        foreign = await login(http, JANE.username, JANE.password)
    assert (await client.get("/v1/me", headers=foreign)).status_code == 401


# Me ----------------------------------------------------------------------------------------


async def test_me_for_each_buyer_has_its_locale(client) -> None:
    jane = (
        await client.get("/v1/me", headers=await login(client, JANE.username, JANE.password))
    ).json()
    assert jane["Username"] == "jane" and jane["ID"] == "jane" and jane["Active"] is True
    assert jane["Buyer"] == {"ID": "acme", "DefaultCatalogID": "ocgw-demo"}
    assert jane["Locale"]["Currency"] == "USD" and jane["Locale"]["Language"] == "en-US"
    assert "Shopper" in jane["AvailableRoles"] and jane["Password"] is None
    gina = (
        await client.get("/v1/me", headers=await login(client, GINA.username, GINA.password))
    ).json()
    assert gina["Buyer"]["ID"] == "globex"
    assert gina["Locale"]["Currency"] == "EUR" and gina["Locale"]["Language"] == "de-DE"


async def test_me_for_anonymous_is_the_template_user(client) -> None:
    me = (await client.get("/v1/me", headers=bearer(await anonymous_token(client)))).json()
    assert me["Username"] == "anon-template" and me["Buyer"]["ID"] == "acme"
    globex = (
        await client.get("/v1/me", headers=bearer(await anonymous_token(client, GLOBEX_CLIENT_ID)))
    ).json()
    assert globex["Buyer"]["ID"] == "globex"


# Catalog -----------------------------------------------------------------------------------


async def test_products_default_page_and_shape(client) -> None:
    headers = bearer(await anonymous_token(client))
    page = (await client.get("/v1/me/products", headers=headers)).json()
    assert page["Meta"] == {
        "Page": 1,
        "PageSize": 20,
        "TotalCount": PRODUCT_COUNT,
        "TotalPages": 3,
        "ItemRange": [1, 20],
        "NextPageKey": None,
        "Facets": [],
    }
    first = page["Items"][0]
    assert first["ID"] == "p-001"
    assert first["PriceSchedule"]["PriceBreaks"][0]["Quantity"] == 1
    assert first["PriceSchedule"]["Currency"] == "USD"
    assert {"brand", "color", "popularity", "sale", "Images", "url"} <= set(first["xp"])
    alone = (await client.get("/v1/me/products/p-001", headers=headers)).json()
    assert first == alone  # the list's pre-encoded items are the same products
    full = (await client.get("/v1/me/products?pageSize=100", headers=headers)).json()
    assert len(full["Items"]) == PRODUCT_COUNT >= 50
    assert len({item["Name"] for item in full["Items"]}) == PRODUCT_COUNT


async def test_products_priced_in_the_buyers_currency(client) -> None:
    usd = (
        await client.get("/v1/me/products/p-001", headers=await login(client, "joe", "joe-pass"))
    ).json()
    eur = (
        await client.get("/v1/me/products/p-001", headers=await login(client, "gus", "gus-pass"))
    ).json()
    assert eur["PriceSchedule"]["Currency"] == "EUR"
    assert (
        eur["PriceSchedule"]["PriceBreaks"][0]["Price"]
        < usd["PriceSchedule"]["PriceBreaks"][0]["Price"]
    )


async def test_products_filters_sort_search_over_http(client) -> None:
    headers = bearer(await anonymous_token(client))

    async def ids(query: str) -> list[str]:
        response = await client.get(f"/v1/me/products?{query}", headers=headers)
        assert response.status_code == 200, response.text
        return [item["ID"] for item in response.json()["Items"]]

    assert await ids("ID=p-003%7Cp-001|p-002") == ["p-001", "p-002", "p-003"]
    on_sale = await ids("xp.sale=true&pageSize=100")
    assert on_sale and all(int(pid[2:]) % 4 == 0 for pid in on_sale)
    assert set(await ids("xp.sale=false&pageSize=100")).isdisjoint(on_sale)
    by_popularity = (
        await client.get("/v1/me/products?sortBy=!xp.popularity&pageSize=100", headers=headers)
    ).json()["Items"]
    scores = [item["xp"]["popularity"] for item in by_popularity]
    assert scores == sorted(scores, reverse=True)
    assert await ids("ID=p-00*&ID=!p-001&pageSize=100") == [f"p-00{n}" for n in range(2, 10)]
    for pid in await ids("search=DIVER"):
        product = (await client.get(f"/v1/me/products/{pid}", headers=headers)).json()
        assert "diver" in (product["Name"] + product["Description"]).lower()
    assert await ids("search=zzzz-nothing") == []


async def test_products_by_category_with_depth(client) -> None:
    headers = bearer(await anonymous_token(client))

    async def count(query: str) -> int:
        response = await client.get(f"/v1/me/products?{query}", headers=headers)
        assert response.status_code == 200, response.text
        return response.json()["Meta"]["TotalCount"]

    mens, womens, smart = [
        await count(f"categoryID={c}") for c in ("mens-watches", "womens-watches", "smart-watches")
    ]
    assert mens and womens and smart
    assert await count("categoryID=watches") == mens + womens + smart  # depth defaults to all
    assert await count("categoryID=watches&depth=1") == 0  # nothing assigned to the parent itself
    assert await count("categoryID=sale") == await count("xp.sale=true")
    assert await count("categoryID=jewellery&catalogID=ocgw-demo") > 0
    missing = await client.get("/v1/me/products?categoryID=nope", headers=headers)
    assert (
        missing.status_code == 404
        and missing.json()["Errors"][0]["Data"]["ObjectType"] == "Category"
    )


async def test_page_size_over_100_is_400(client) -> None:
    headers = bearer(await anonymous_token(client))
    response = await client.get("/v1/me/products?pageSize=101", headers=headers)
    assert response.status_code == 400
    assert response.json()["Errors"][0]["ErrorCode"] == "ValidationFailure"


async def test_unknown_product_is_not_found_with_data(client) -> None:
    response = await client.get("/v1/me/products/x", headers=bearer(await anonymous_token(client)))
    assert response.status_code == 404
    assert response.json() == {
        "Errors": [
            {
                "ErrorCode": "NotFound",
                "Message": "Product not found: x",
                "Data": {"ObjectType": "Product", "ObjectID": "x"},
            }
        ]
    }


async def test_promotions_target_audiences(client) -> None:
    headers = bearer(await anonymous_token(client))
    page = (await client.get("/v1/me/promotions", headers=headers)).json()
    assert "Facets" not in page["Meta"]
    audiences = {item["xp"]["targetAudience"] for item in page["Items"]}
    assert {"all", "newVisitor", "repeatCustomer", "vip"} <= audiences
    repeat = (
        await client.get("/v1/me/promotions?xp.targetAudience=repeatCustomer", headers=headers)
    ).json()
    assert repeat["Items"] and all(
        p["xp"]["targetAudience"] == "repeatCustomer" for p in repeat["Items"]
    )
    one = (
        await client.get(f"/v1/me/promotions/{repeat['Items'][0]['ID']}", headers=headers)
    ).json()
    assert one["Code"] == repeat["Items"][0]["Code"]


async def test_categories_depth_and_parent(client) -> None:
    headers = bearer(await anonymous_token(client))

    async def ids(query: str = "") -> list[str]:
        response = await client.get(f"/v1/me/categories?{query}", headers=headers)
        assert response.status_code == 200, response.text
        return [item["ID"] for item in response.json()["Items"]]

    top = await ids()
    assert {"watches", "jewellery", "accessories", "sale"} <= set(top) and "rings" not in top
    assert set(await ids("ParentID=watches")) == {"mens-watches", "womens-watches", "smart-watches"}
    assert "rings" in await ids("depth=all")
    assert set(await ids("depth=all&productID=p-004")) == {"rings", "sale"}
    watches = (await client.get("/v1/me/categories/watches", headers=headers)).json()
    assert watches["ChildCount"] == 3


# Routing and request bodies ----------------------------------------------------------------


async def test_routes_are_case_insensitive(client) -> None:
    headers = bearer(await anonymous_token(client))
    assert (await client.get("/V1/Me/Products/p-001", headers=headers)).json()["ID"] == "p-001"
    assert (await client.get("/v1/ME", headers=headers)).status_code == 200
    assert (await client.get("/v1/me/products/", headers=headers)).status_code == 200


async def test_unknown_route_and_wrong_method(client) -> None:
    headers = bearer(await anonymous_token(client))
    missing = await client.get("/v1/nothing/here", headers=headers)
    assert missing.status_code == 404
    assert missing.json()["Errors"][0]["Data"] == {
        "ObjectType": "Route",
        "ObjectID": "/v1/nothing/here",
    }
    wrong = await client.delete("/v1/me/products", headers=headers)
    assert wrong.status_code == 405 and wrong.json()["Errors"][0]["ErrorCode"] == "MethodNotAllowed"


async def test_bad_json_is_400_and_bom_is_tolerated(client) -> None:
    headers = {**bearer(await anonymous_token(client)), "Content-Type": "application/json"}
    bad = await client.post("/v1/cart/lineitems", headers=headers, content=b"{not json")
    assert bad.status_code == 400
    assert bad.json()["Errors"][0]["ErrorCode"] == "Request.InvalidRequestBody"
    bom = await client.post(
        "/v1/cart/lineitems", headers=headers, content='\ufeff{"ProductID": "p-002"}'.encode()
    )
    assert bom.status_code == 201 and bom.json()["Quantity"] == 1
