"""Issue 7, "trust nothing a client sends": every finding against the admin API and the tables
file, replayed. Each must be a 4xx with a JSON error (or a refused file edit), and publish
nothing."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from decisions.compile import MAX_REPORTED_ERRORS
from decisions.loader import MAX_DEPTH, MAX_DOCUMENT_BYTES
from decisions.service import DecisionService
from gateway import compose
from gateway.settings import Settings
from tests.test_decisions_admin import AUTH, EXAMPLE, client_for

DEEP_FLOW = "[" * 1000
DEEP_JSON = '{"a": ' * 1000
DEEP_BLOCK = "".join(f"{'  ' * i}a{i}:\n" for i in range(MAX_DEPTH + 5))
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 10)}]\n"
    for prev, name in zip("abcdefg", "bcdefgh")
)


def nothing_published(client: TestClient, service: DecisionService) -> bool:
    versions = client.get("/versions", headers=AUTH).json()
    return service.version is None and versions == {"live": None, "versions": []}


@pytest.mark.parametrize(
    "body",
    [
        {"visitor": 5, "url": "/v1/me/products"},
        {"url": 5},
        {"url": "/v1/me/products", "segments": "vip"},
        {"url": "/v1/me/products", "segments": [1, 2]},
        {"url": "/v1/me/products", "headers": {"CF-IPCountry": 44}},
        {"url": "/v1/me/products", "headers": ["CF-IPCountry: GB"]},
        {"visitor": "anon-x"},
        [],
        "url",
        None,
    ],
)
def test_explain_refuses_wrong_json_types(tmp_path: Path, body: object) -> None:
    client, service = client_for(tmp_path)
    answer = client.post("/explain", json=body, headers=AUTH)
    assert answer.status_code == 400 and "Send" in answer.json()["error"]
    assert nothing_published(client, service)


@pytest.mark.parametrize("raw", [b"{", b"", b"\xff\xfe{}", b"nope", b'{"url": "/v1/me/products"'])
def test_explain_refuses_bodies_that_are_not_json(tmp_path: Path, raw: bytes) -> None:
    client, _ = client_for(tmp_path)
    answer = client.post("/explain", content=raw, headers=AUTH)
    assert answer.status_code == 400 and answer.json()["error"]


def test_explain_names_the_bad_field(tmp_path: Path) -> None:
    client, _ = client_for(tmp_path)
    answer = client.post("/explain", json={"visitor": 5, "url": "/v1/me/products"}, headers=AUTH)
    assert answer.json()["error"].startswith("visitor: Input should be a valid string")


def test_explain_refuses_a_huge_body(tmp_path: Path) -> None:
    client, _ = client_for(tmp_path)
    answer = client.post("/explain", json={"url": "/v1/me/products?" + "a" * 70_000}, headers=AUTH)
    assert answer.status_code == 413 and "larger than" in answer.json()["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/versions/99999999999999999999999",
        "/versions/9223372036854775808",
        "/versions/0",
    ],
)
def test_version_numbers_sqlite_cannot_hold_are_no_such_version(tmp_path: Path, path: str) -> None:
    client, service = client_for(tmp_path)
    answer = client.get(path, headers=AUTH)
    assert answer.status_code == 404 and answer.json() == {"error": "no such version"}
    assert nothing_published(client, service)


@pytest.mark.parametrize("number", ["1741255014335335383433216", "9223372036854775808", "0"])
def test_rollback_to_a_number_sqlite_cannot_hold_is_no_such_version(
    tmp_path: Path, number: str
) -> None:
    client, service = client_for(tmp_path)
    answer = client.post(f"/rollback/{number}", headers=AUTH)
    assert answer.status_code == 404 and answer.json() == {"error": "no such version"}
    assert nothing_published(client, service)


def test_the_largest_sqlite_integer_is_looked_up(tmp_path: Path) -> None:
    client, _ = client_for(tmp_path)
    assert client.get(f"/versions/{2**63 - 1}", headers=AUTH).status_code == 404


@pytest.mark.parametrize("route", ["/validate", "/publish"])
@pytest.mark.parametrize("document", [DEEP_FLOW, DEEP_JSON, DEEP_BLOCK])
def test_nesting_bombs_are_refused_at_a_line(tmp_path: Path, route: str, document: str) -> None:
    client, service = client_for(tmp_path)
    answer = client.post(route, content=document, headers=AUTH)
    assert answer.status_code == 422
    [error] = answer.json()["errors"]
    assert error["message"] == f"nested deeper than {MAX_DEPTH} levels" and error["line"] >= 1
    assert nothing_published(client, service)


@pytest.mark.parametrize("route", ["/validate", "/publish"])
def test_alias_bombs_are_refused(tmp_path: Path, route: str) -> None:
    client, service = client_for(tmp_path)
    answer = client.post(route, content=ALIAS_BOMB, headers=AUTH)
    assert answer.status_code == 422
    assert "aliases expanded" in answer.json()["errors"][0]["message"]
    assert nothing_published(client, service)


@pytest.mark.parametrize("route", ["/validate", "/publish"])
def test_oversized_documents_are_refused(tmp_path: Path, route: str) -> None:
    client, service = client_for(tmp_path)
    answer = client.post(route, content=b"#" * (MAX_DOCUMENT_BYTES + 1), headers=AUTH)
    assert answer.status_code == 413 and "larger than" in answer.json()["error"]
    assert nothing_published(client, service)


@pytest.mark.parametrize("route", ["/validate", "/publish"])
@pytest.mark.parametrize("document", ["", "  \n\t\n", "# only a comment\n", "---\n"])
def test_empty_documents_are_refused(tmp_path: Path, route: str, document: str) -> None:
    client, service = client_for(tmp_path)
    answer = client.post(route, content=document, headers=AUTH)
    assert answer.status_code == 422
    assert [e["message"] for e in answer.json()["errors"]] == ["empty document"]
    assert nothing_published(client, service)


@pytest.mark.parametrize("route", ["/validate", "/publish"])
@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xfe\x00t\x00a\x00b",  # UTF-16
        EXAMPLE.encode("latin-1", "replace").replace(b"#", b"\xe9"),
    ],
)
def test_non_utf8_documents_are_refused(tmp_path: Path, route: str, raw: bytes) -> None:
    client, service = client_for(tmp_path)
    answer = client.post(route, content=raw, headers=AUTH)
    assert answer.status_code == 400 and answer.json() == {"error": "document must be UTF-8"}
    assert nothing_published(client, service)


@pytest.mark.parametrize(
    "document",
    [
        "[1, 2, 3]",
        "just words",
        '{"tables": "all of them"}',
        "tables: [oops",
        "a: 1\n---\nb: 2\n",
        "tables:\n  - !!python/object:os.system {}\n",
        "<tables><table/></tables>",
    ],
)
def test_documents_of_the_wrong_shape_are_refused(tmp_path: Path, document: str) -> None:
    client, service = client_for(tmp_path)
    for route in ("/validate", "/publish"):
        answer = client.post(route, content=document, headers=AUTH)
        assert answer.status_code == 422 and answer.json()["errors"]
    assert nothing_published(client, service)


def test_errors_are_capped_for_a_document_broken_everywhere(tmp_path: Path) -> None:
    client, service = client_for(tmp_path)
    rules = "".join(f"      - id: r{i}\n        then: {{ pageSize: 0 }}\n" for i in range(500))
    document = f"tables:\n  - id: t\n    applies_to: me/products\n    rules:\n{rules}"
    answer = client.post("/publish", content=document, headers=AUTH)
    errors = answer.json()["errors"]
    assert answer.status_code == 422 and len(errors) == MAX_REPORTED_ERRORS + 1
    assert errors[0]["line"] == 6 and errors[-1]["message"] == "… and 400 more"
    assert nothing_published(client, service)


def test_unknown_tables_routes_and_methods_answer_json(tmp_path: Path) -> None:
    client, service = client_for(tmp_path)
    assert client.get("/tables/nope", headers=AUTH).json() == {"error": "no live table 'nope'"}
    for method, path, status in [
        ("GET", "/nope", 404),
        ("GET", "/versions/abc", 404),
        ("GET", "/versions/-1", 404),
        ("POST", "/rollback/1.5", 404),
        ("GET", "/publish", 405),
        ("DELETE", "/versions/1", 405),
    ]:
        answer = client.request(method, path, headers=AUTH)
        assert answer.status_code == status and answer.json()["error"], (method, path)
    assert nothing_published(client, service)


# The tables file goes through the same parse path, with the same limits.


@pytest.mark.anyio
@pytest.mark.parametrize(
    "content",
    [
        DEEP_FLOW.encode(),
        DEEP_BLOCK.encode(),
        ALIAS_BOMB.encode(),
        b"",
        b"\xff\xfe\x00t",
        b"#" * (MAX_DOCUMENT_BYTES + 1),
    ],
)
async def test_the_tables_file_has_the_same_limits(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "tables.yaml"
    path.write_bytes(content)
    settings = Settings(store=tmp_path / "gw.db", decisions=path)
    state = await compose.open_store(settings)
    service = compose.decider(settings, state, httpx.AsyncClient())
    assert await service.reload() is None
    [error] = service.last_errors
    assert error.file == str(path)
    assert service.version is None and await service.versions.list() == []
    await state.close()
