"""Admin HTTP API for marketers' tools: list, read, validate, publish, version and roll back tables.

Mounted by the gateway at /admin. Every route but the OpenAPI document needs
`Authorization: Bearer <OCGW_ADMIN_TOKEN>`, compared in constant time; without a configured
token the API is closed (503). Bodies are the table document itself, YAML or JSON.

Nothing a client sends is trusted: every malformed request (wrong JSON types, non-UTF-8, an
oversized or empty document, a version number SQLite cannot hold, an unknown route) is a 4xx
with a JSON `{"error": ...}` (or, for documents, `{"errors": [...]}`) body, never a 500.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from decisions.errors import ValidationFailed
from decisions.loader import MAX_DOCUMENT_BYTES
from decisions.models import TableSet
from decisions.service import DecisionService

MAX_EXPLAIN_BYTES = 64 * 1024
Handler = Callable[[Request], Awaitable[Response]]


class ExplainBody(BaseModel):
    """POST /explain: strict, so `{"visitor": 5}` is refused instead of turned into "5"."""

    model_config = ConfigDict(strict=True, extra="forbid")

    url: str
    visitor: str | None = None
    segments: list[str] = Field(default_factory=list)
    headers: dict[str, str] = Field(default_factory=dict)


def _authorized(token: str | None, request: Request) -> Response | None:
    """None if the caller may proceed, else the refusal. Fails closed."""
    if not token:
        return JSONResponse({"error": "admin API disabled: set OCGW_ADMIN_TOKEN"}, status_code=503)
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode("utf-8"), token.encode("utf-8")
    ):
        return JSONResponse(
            {"error": "unauthorized"},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="ocgateway-admin"'},
        )
    return None


def _guard(token: str | None, handler: Handler) -> Handler:
    async def guarded(request: Request) -> Response:
        return _authorized(token, request) or await handler(request)

    return guarded


async def _body(request: Request, limit: int) -> bytes | Response:
    """The body, read no further than `limit` bytes: a huge upload is refused, not buffered."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return _too_large(limit)
    return bytes(body)


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse({"error": f"body larger than {limit} bytes"}, status_code=413)


async def _text(request: Request) -> str | Response:
    body = await _body(request, MAX_DOCUMENT_BYTES)
    if isinstance(body, Response):
        return body
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return JSONResponse({"error": "document must be UTF-8"}, status_code=400)


def _rejected(exc: ValidationFailed) -> JSONResponse:
    return JSONResponse(
        {"ok": False, "errors": [e.as_dict() | {"text": str(e)} for e in exc.errors]},
        status_code=422,
    )


def _author(request: Request, default: str = "admin") -> str:
    return (request.headers.get("x-author") or request.query_params.get("author") or default)[:200]


def openapi() -> dict[str, Any]:
    """The API description; table schemas come straight from the pydantic models."""
    schema = TableSet.model_json_schema(ref_template="#/components/schemas/{model}", by_alias=True)
    components = schema.pop("$defs", {}) | {"TableSet": schema}
    doc_body = {
        "required": True,
        "content": {
            "application/yaml": {"schema": {"$ref": "#/components/schemas/TableSet"}},
            "application/json": {"schema": {"$ref": "#/components/schemas/TableSet"}},
        },
    }
    author = {"name": "X-Author", "in": "header", "schema": {"type": "string"}}
    comment = {"name": "X-Comment", "in": "header", "schema": {"type": "string"}}
    number = {"name": "version", "in": "path", "required": True, "schema": {"type": "integer"}}
    ok = {"description": "OK", "content": {"application/json": {}}}
    bad = {"description": "the document is invalid: errors name table, rule, field and line"}

    def op(summary: str, **extra: Any) -> dict[str, Any]:
        return {"summary": summary, "responses": {"200": ok}, **extra}

    return {
        "openapi": "3.1.0",
        "info": {"title": "ocgateway decision tables admin", "version": "1"},
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/tables": {"get": op("live tables with version and the last refused file edit")},
            "/tables/{table_id}": {
                "get": op(
                    "one live table",
                    parameters=[
                        {
                            "name": "table_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                )
            },
            "/source": {"get": op("the live version's document text")},
            "/validate": {
                "post": op(
                    "dry run: validate a document",
                    requestBody=doc_body,
                    responses={"200": ok, "422": bad},
                )
            },
            "/publish": {
                "post": op(
                    "publish a document as a new live version",
                    requestBody=doc_body,
                    parameters=[author, comment],
                    responses={"201": ok, "422": bad},
                )
            },
            "/versions": {"get": op("every published version, newest first")},
            "/versions/{version}": {
                "get": op("one version with its source and diff", parameters=[number])
            },
            "/rollback/{version}": {
                "post": op(
                    "publish an old version's source again",
                    parameters=[number, author],
                    responses={"201": ok, "404": {"description": "no such version"}},
                )
            },
            "/explain": {
                "post": op(
                    "what would this shopper get, and why",
                    requestBody={
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["url"],
                                    "properties": {
                                        "visitor": {"type": "string"},
                                        "url": {"type": "string"},
                                        "segments": {"type": "array", "items": {"type": "string"}},
                                        "headers": {
                                            "type": "object",
                                            "additionalProperties": {"type": "string"},
                                        },
                                    },
                                }
                            }
                        }
                    },
                )
            },
            "/stats": {"get": op("decision counters")},
        },
    }


def create_admin_app(service: DecisionService, admin_token: str | None) -> Starlette:
    """The ASGI app the gateway mounts at /admin."""

    async def list_tables(request: Request) -> Response:
        live = service.live
        tables = (
            []
            if live is None
            else [
                {
                    "id": t.id,
                    "applies_to": t.applies_to,
                    "hit": t.hit,
                    "enabled": t.enabled,
                    "rules": len(t.rules),
                }
                for t in live.document.tables
            ]
        )
        return JSONResponse(
            {
                "version": service.version,
                "tables": tables,
                "last_file_errors": [str(e) for e in service.last_errors],
            }
        )

    async def get_table(request: Request) -> Response:
        wanted = request.path_params["table_id"]
        for table in service.live.document.tables if service.live else []:
            if table.id == wanted:
                return JSONResponse(
                    table.model_dump(mode="json", by_alias=True, exclude_none=True)
                    | {"version": service.version}
                )
        return JSONResponse({"error": f"no live table {wanted!r}"}, status_code=404)

    async def source(request: Request) -> Response:
        number = service.version
        version = await service.get_version(number) if number else None
        return JSONResponse({"version": number, "source": version.source if version else ""})

    async def validate(request: Request) -> Response:
        text = await _text(request)
        if isinstance(text, Response):
            return text
        try:
            compiled = await service.check(text)
        except ValidationFailed as exc:
            return _rejected(exc)
        return JSONResponse({"ok": True, "tables": [t.id for t in compiled.document.tables]})

    async def publish(request: Request) -> Response:
        text = await _text(request)
        if isinstance(text, Response):
            return text
        comment = request.headers.get("x-comment") or request.query_params.get("comment") or ""
        try:
            version = await service.publish(text, _author(request), comment[:500])
        except ValidationFailed as exc:
            return _rejected(exc)
        return JSONResponse(version.summary() | {"diff": version.diff}, status_code=201)

    async def versions(request: Request) -> Response:
        return JSONResponse(
            {
                "live": service.version,
                "versions": [v.summary() for v in await service.list_versions()],
            }
        )

    async def version(request: Request) -> Response:
        found = await service.get_version(_number(request))
        if found is None:
            return JSONResponse({"error": "no such version"}, status_code=404)
        return JSONResponse(found.summary() | {"source": found.source, "diff": found.diff})

    async def rollback(request: Request) -> Response:
        try:
            done = await service.rollback(_number(request), _author(request))
        except ValidationFailed as exc:
            return _rejected(exc)
        if done is None:
            return JSONResponse({"error": "no such version"}, status_code=404)
        return JSONResponse(done.summary() | {"diff": done.diff}, status_code=201)

    async def explain(request: Request) -> Response:
        body = await _body(request, MAX_EXPLAIN_BYTES)
        if isinstance(body, Response):
            return body
        try:
            asked = ExplainBody.model_validate_json(body)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:10]
            )
            return JSONResponse(
                {
                    "error": f"{problems}. Send "
                    '{"url": "/v1/me/products?…", "visitor": "…", "segments": ["…"], '
                    '"headers": {"…": "…"}}'
                },
                status_code=400,
            )
        return JSONResponse(
            await service.explain(asked.visitor, asked.url, asked.segments, asked.headers)
        )

    async def stats(request: Request) -> Response:
        return JSONResponse(service.stats)

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(openapi())

    def guarded(path: str, handler: Handler, methods: list[str]) -> Route:
        return Route(path, _guard(admin_token, handler), methods=methods)

    return Starlette(
        exception_handlers={HTTPException: _http_error},
        routes=[
            Route("/openapi.json", openapi_json, methods=["GET"]),
            guarded("/tables", list_tables, ["GET"]),
            guarded("/tables/{table_id}", get_table, ["GET"]),
            guarded("/source", source, ["GET"]),
            guarded("/validate", validate, ["POST"]),
            guarded("/publish", publish, ["POST"]),
            guarded("/versions", versions, ["GET"]),
            guarded("/versions/{version:int}", version, ["GET"]),
            guarded("/rollback/{version:int}", rollback, ["POST"]),
            guarded("/explain", explain, ["POST"]),
            guarded("/stats", stats, ["GET"]),
        ],
    )


def _number(request: Request) -> int:
    return int(request.path_params["version"])


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, wrong method) as JSON, like every other answer."""
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)
