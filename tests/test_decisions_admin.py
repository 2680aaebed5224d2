"""Admin API: bearer auth (missing, wrong, right, closed), publish, validate, versions, diff,
rollback, explain and the OpenAPI document, through starlette's TestClient."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from decisions.admin import create_admin_app
from decisions.service import DecisionService
from gateway import compose
from gateway.settings import Settings

EXAMPLE = (Path(__file__).parent.parent / "examples" / "decisions.yaml").read_text()
TOKEN = "s3cret-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def client_for(tmp_path: Path, token: str | None = TOKEN) -> tuple[TestClient, DecisionService]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    settings = Settings(store=tmp_path / "gw.db", admin_token=token)
    state = asyncio.run(compose.open_store(settings))  # SQLite serves callers on any loop
    service = compose.decider(settings, state, httpx.AsyncClient())
    return TestClient(create_admin_app(service, token)), service


def test_auth_missing_wrong_right_and_closed(tmp_path: Path) -> None:
    client, _ = client_for(tmp_path)
    missing = client.get("/tables")
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    assert client.get("/tables", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/tables", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    assert (
        client.post("/publish", content=EXAMPLE, headers={"Authorization": "Bearer x"}).status_code
        == 401
    )
    assert client.get("/tables", headers=AUTH).status_code == 200
    closed, _ = client_for(tmp_path / "closed", token=None)
    assert closed.get("/tables", headers=AUTH).status_code == 503
    assert closed.post("/publish", content=EXAMPLE, headers=AUTH).status_code == 503


def test_publish_versions_diff_and_rollback(tmp_path: Path) -> None:
    client, service = client_for(tmp_path)
    first = client.post(
        "/publish", content=EXAMPLE, headers=AUTH | {"X-Author": "mia", "X-Comment": "launch"}
    )
    assert first.status_code == 201
    assert first.json()["version"] == 1 and first.json()["author"] == "mia"
    assert service.version == 1
    edited = EXAMPLE.replace("p-013", "p-014")
    second = client.post("/publish", content=edited, headers=AUTH | {"X-Author": "leo"})
    assert second.status_code == 201 and service.version == 2
    assert "-        then:   { pin: [p-001, p-007, p-013" in second.json()["diff"]
    tables = client.get("/tables", headers=AUTH).json()
    assert tables["version"] == 2
    assert [t["id"] for t in tables["tables"]] == [
        "featured-products",
        "audience-promotions",
        "category-order",
    ]
    one = client.get("/tables/featured-products", headers=AUTH).json()
    assert one["rules"][1]["then"]["pin"] == ["p-001", "p-007", "p-014", "p-021"]
    assert client.get("/tables/nope", headers=AUTH).status_code == 404
    assert client.get("/source", headers=AUTH).json() == {"version": 2, "source": edited}

    versions = client.get("/versions", headers=AUTH).json()
    assert versions["live"] == 2
    assert [(v["version"], v["author"], v["comment"]) for v in versions["versions"]] == [
        (2, "leo", ""),
        (1, "mia", "launch"),
    ]
    v2 = client.get("/versions/2", headers=AUTH).json()
    assert v2["source"] == edited and v2["diff"] == second.json()["diff"]
    assert client.get("/versions/9", headers=AUTH).status_code == 404

    back = client.post("/rollback/1", headers=AUTH | {"X-Author": "mia"})
    assert back.status_code == 201
    assert back.json()["version"] == 3 and back.json()["comment"] == "rollback to v1"
    assert "+        then:   { pin: [p-001, p-007, p-013" in back.json()["diff"]
    assert service.version == 3 and asyncio.run(service.versions.get(3)).source == EXAMPLE
    assert client.post("/rollback/42", headers=AUTH).status_code == 404


def test_bad_publish_is_rejected_with_located_errors_and_old_version_stays(tmp_path: Path) -> None:
    client, service = client_for(tmp_path)
    assert client.post("/publish", content=EXAMPLE, headers=AUTH).status_code == 201
    live = service.live
    bad = EXAMPLE.replace(
        'then: { sortBy: "!xp.popularity" }', 'then: { sortBy: "!xp.popularity", pageSize: 0 }'
    )
    assert bad != EXAMPLE
    answer = client.post("/publish", content=bad, headers=AUTH)
    assert answer.status_code == 422
    [error] = answer.json()["errors"]
    line = EXAMPLE.splitlines().index('        then: { sortBy: "!xp.popularity" }') + 1
    assert error | {"text": ""} == {
        "table": "category-order",
        "rule": "watches-first",
        "field": "then.pageSize",
        "line": line,
        "message": "Input should be greater than or equal to 1",
        "text": "",
    }
    assert service.live is live and service.version == 1
    assert [v["version"] for v in client.get("/versions", headers=AUTH).json()["versions"]] == [1]


def test_validate_is_a_dry_run(tmp_path: Path) -> None:
    client, service = client_for(tmp_path)
    ok = client.post("/validate", content=EXAMPLE, headers=AUTH)
    assert ok.json() == {
        "ok": True,
        "tables": ["featured-products", "audience-promotions", "category-order"],
    }
    bad = client.post(
        "/validate", content="tables:\n  - id: t\n    applies_to: me/orders\n", headers=AUTH
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "applies_to"
    assert (
        service.version is None and client.get("/versions", headers=AUTH).json()["versions"] == []
    )


def test_explain_stats_and_openapi(tmp_path: Path) -> None:
    client, _ = client_for(tmp_path)
    client.post("/publish", content=EXAMPLE, headers=AUTH)
    why = client.post(
        "/explain", json={"visitor": "anon-x", "url": "/v1/me/products?page=1"}, headers=AUTH
    )
    assert why.status_code == 200
    assert why.json()["segments"] == ["newcomer"]
    assert (
        why.json()["x_decision"]
        == "table=featured-products;rule=newcomer-picks;variant=default;version=1"
    )
    assert client.post("/explain", content=b"nope", headers=AUTH).status_code == 400
    mobile = client.post(
        "/explain",
        json={
            "visitor": "anon-x",
            "url": "/v1/me/categories",
            "segments": ["watch-lovers"],
            "headers": {"User-Agent": "Mozilla/5.0 (iPhone) Mobile"},
        },
        headers=AUTH,
    ).json()
    assert mobile["segments"] == ["mobile-shopper", "newcomer", "watch-lovers"]
    assert mobile["query"] == "sortBy=!xp.popularity"
    assert client.get("/stats", headers=AUTH).json()["publishes"] == 1
    doc = client.get("/openapi.json")
    assert doc.status_code == 200
    assert {"/tables", "/publish", "/rollback/{version}", "/versions/{version}"} <= set(
        doc.json()["paths"]
    )
    assert "TableSet" in doc.json()["components"]["schemas"]


@pytest.mark.parametrize(
    "header", ["Bearer ", "Bearer  ", "bearer s3cret-admin-tokenX", "Bearer \u00e9"]
)
def test_odd_credentials_are_refused(tmp_path: Path, header: str) -> None:
    client, _ = client_for(tmp_path)
    assert (
        client.get("/tables", headers={"Authorization": header.encode("utf-8")}).status_code == 401
    )


def test_openapi_document_is_built_from_the_served_routes(tmp_path: Path) -> None:
    client, _ = client_for(tmp_path)
    doc = client.get("/openapi.json").json()
    assert doc["servers"] == [{"url": "/admin"}]
    served = {
        (method.lower(), re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path))
        for route in client.app.routes  # type: ignore[attr-defined]
        for method in route.methods - {"HEAD"}
    }
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == served
    for path, ops in doc["paths"].items():
        for operation in ops.values():
            statuses = set(operation["responses"])
            if path != "/openapi.json":
                assert {"401", "503"} <= statuses, path
            for answer in operation["responses"].values():
                assert answer["content"]["application/json"]["schema"]["$ref"]
    assert doc["paths"]["/rollback/{version}"]["post"]["responses"].keys() == {
        "201",
        "401",
        "404",
        "422",
        "503",
    }
    assert doc["paths"]["/versions/{version}"]["get"]["parameters"][0]["schema"] == {
        "type": "integer",
        "minimum": 0,
    }
    assert {"TableSet", "Problem", "Rejected", "Published"} <= set(doc["components"]["schemas"])


def test_explain_of_a_route_decisions_do_not_rewrite_is_refused(tmp_path: Path) -> None:
    client, _ = client_for(tmp_path)
    nothing_live = client.post("/explain", json={"url": "/v1/me/products"}, headers=AUTH)
    assert nothing_live.status_code == 422
    assert nothing_live.json() == {"error": "no decision tables are live"}
    client.post("/publish", content=EXAMPLE, headers=AUTH)
    answer = client.post("/explain", json={"url": "/v1/me/orders"}, headers=AUTH)
    assert answer.status_code == 422 and "not a list route" in answer.json()["error"]
