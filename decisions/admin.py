"""Admin HTTP API for marketers' tools: list, read, validate, publish, version and roll back tables.

Mounted by the gateway at /admin. Every route but the OpenAPI document needs
`Authorization: Bearer <OCGW_ADMIN_TOKEN>`, compared in constant time; without a configured
token the API is closed (503). Bodies are the table document itself, YAML or JSON.

Nothing a client sends is trusted: every malformed request (wrong JSON types, non-UTF-8, an
oversized or empty document, a version number SQLite cannot hold, an unknown route) is a 4xx
with a JSON `{"error": ...}` (or, for documents, `{"errors": [...]}`) body, never a 500.

The routes are declared once, in `endpoints`: each with its models and statuses. The app and
its OpenAPI document (`/admin/openapi.json`) are both built from that list.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from decisions.errors import ValidationFailed
from decisions.loader import MAX_DOCUMENT_BYTES
from decisions.models import Table, TableSet
from decisions.openapi import Answer, Body, Endpoint, Handler, Param, document, routes
from decisions.service import DecisionService
from state.versions import Version

MAX_EXPLAIN_BYTES = 64 * 1024
MAX_AUTHOR = 200
MAX_COMMENT = 500


class ExplainBody(BaseModel):
    """POST /explain: strict, so `{"visitor": 5}` is refused instead of turned into "5"."""

    model_config = ConfigDict(strict=True, extra="forbid")

    url: str
    visitor: str | None = None
    segments: list[str] = Field(default_factory=list)
    headers: dict[str, str] = Field(default_factory=dict)


# What the routes answer. Handlers build their JSON from these models and the OpenAPI document
# describes the routes with them, so the two agree.


class Problem(BaseModel):
    error: str


class TableProblem(BaseModel):
    """One reason a document was refused, located by table, rule, field and line."""

    message: str
    text: str = Field(description="the whole problem as one line")
    table: str | None = None
    rule: str | None = None
    segment: str | None = None
    field: str | None = None
    file: str | None = None
    line: int | None = None


class Rejected(BaseModel):
    ok: Literal[False] = False
    errors: list[TableProblem]


class Checked(BaseModel):
    ok: Literal[True] = True
    tables: list[str]


class TableSummary(BaseModel):
    id: str
    applies_to: str
    hit: str
    enabled: bool
    rules: int


class LiveTables(BaseModel):
    version: int | None
    tables: list[TableSummary]
    last_file_errors: list[str] = Field(description="why the last tables file edit was refused")


class LiveTable(Table):
    """A live table as written, with the version it is live in."""

    version: int


class Source(BaseModel):
    version: int | None
    source: str


class VersionSummary(BaseModel):
    version: int
    created_at: float
    author: str
    comment: str


class Published(VersionSummary):
    diff: str = Field(description="unified diff against the version before")


class VersionDetail(Published):
    source: str


class Versions(BaseModel):
    live: int | None
    versions: list[VersionSummary] = Field(description="newest first")


class TableExplanation(BaseModel):
    table: str
    hit: str
    rules: list[dict[str, Any]] = Field(description="each rule: matched, chosen, and why not")


class Explanation(BaseModel):
    version: int
    route: str
    visitor: str | None
    profile_found: bool
    segments: list[str]
    segments_given: list[str]
    cdp_segments: list[str]
    tables: list[TableExplanation]
    original_query: str
    query: str
    kept_shopper_params: list[str]
    pin: list[str]
    x_decision: str | None


class Stats(RootModel[dict[str, int]]):
    """Decision counters (also on /readyz)."""


class OpenApiDocument(RootModel[dict[str, Any]]):
    """This document."""


GUARD_ANSWERS = {
    401: Answer(
        "no or wrong bearer token",
        Problem,
        headers={"WWW-Authenticate": 'Bearer realm="ocgateway-admin"'},
    ),
    503: Answer(
        "the admin API is closed (no OCGW_ADMIN_TOKEN) or the gateway is starting", Problem
    ),
}
TOO_LARGE = Answer("the body is larger than the route accepts", Problem)
NOT_UTF8 = Answer("the document is not UTF-8", Problem)
REFUSED = Answer("the document is invalid: errors name table, rule, field and line", Rejected)
NO_VERSION = Answer("no such version", Problem)
AUTHOR = (
    Param("X-Author", "header", f"who made the change (first {MAX_AUTHOR} characters kept)"),
    Param("author", "query", "the same as X-Author, for clients that cannot set headers"),
)
COMMENT = (
    Param("X-Comment", "header", f"why (first {MAX_COMMENT} characters kept)"),
    Param("comment", "query", "the same as X-Comment"),
)
DOCUMENT = Body(
    TableSet,
    ("application/yaml", "application/json"),
    "a whole decision-table document, YAML or JSON",
)


def _answer(model: BaseModel, status: int = 200, *, exclude_none: bool = False) -> JSONResponse:
    return JSONResponse(
        model.model_dump(mode="json", by_alias=True, exclude_none=exclude_none),
        status_code=status,
    )


def _problem(error: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(Problem(error=error).model_dump(), status_code=status, headers=headers)


def _authorized(token: str | None, request: Request) -> Response | None:
    """None if the caller may proceed, else the refusal. Fails closed."""
    if not token:
        return _problem("admin API disabled: set OCGW_ADMIN_TOKEN", 503)
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode("utf-8"), token.encode("utf-8")
    ):
        return _problem("unauthorized", 401, {"WWW-Authenticate": 'Bearer realm="ocgateway-admin"'})
    return None


def _guard(token: str | None) -> Callable[[Handler], Handler]:
    def guard(handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            return _authorized(token, request) or await handler(request)

        return guarded

    return guard


async def _body(request: Request, limit: int) -> bytes | Response:
    """The body, read no further than `limit` bytes: a huge upload is refused, not buffered."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return _problem(f"body larger than {limit} bytes", 413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return _problem(f"body larger than {limit} bytes", 413)
    return bytes(body)


async def _text(request: Request) -> str | Response:
    body = await _body(request, MAX_DOCUMENT_BYTES)
    if isinstance(body, Response):
        return body
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return _problem("document must be UTF-8", 400)


def _rejected(exc: ValidationFailed) -> JSONResponse:
    problems = [TableProblem.model_validate(e.as_dict() | {"text": str(e)}) for e in exc.errors]
    return _answer(Rejected(errors=problems), 422, exclude_none=True)


def _author(request: Request, default: str = "admin") -> str:
    given = request.headers.get("x-author") or request.query_params.get("author")
    return (given or default)[:MAX_AUTHOR]


def _number(request: Request) -> int:
    return int(request.path_params["version"])


def _published(version: Version) -> Published:
    return Published.model_validate(version.summary() | {"diff": version.diff})


def create_admin_app(service: DecisionService, admin_token: str | None) -> Starlette:
    """The ASGI app the gateway mounts at /admin: the routes of `endpoints`, guarded."""
    return Starlette(
        exception_handlers={HTTPException: refusal},
        routes=routes(endpoints(service), _guard(admin_token)),
    )


def openapi(service: DecisionService) -> dict[str, Any]:
    """The OpenAPI document of the admin API, built from the same endpoints it serves."""
    return document(
        endpoints(service),
        title="ocgateway decision tables admin",
        version="1",
        server="/admin",
        guard_answers=GUARD_ANSWERS,
    )


def endpoints(service: DecisionService) -> list[Endpoint]:
    """Every admin route: its handler, models and statuses, in one place."""

    async def list_tables(request: Request) -> Response:
        live = service.live
        tables = [
            TableSummary(
                id=t.id, applies_to=t.applies_to, hit=t.hit, enabled=t.enabled, rules=len(t.rules)
            )
            for t in (live.document.tables if live else ())
        ]
        return _answer(
            LiveTables(
                version=service.version,
                tables=tables,
                last_file_errors=[str(e) for e in service.last_errors],
            )
        )

    async def get_table(request: Request) -> Response:
        wanted = request.path_params["table_id"]
        live = service.live
        for table in live.document.tables if live else ():
            if table.id == wanted:
                found = LiveTable.model_validate(
                    table.model_dump(by_alias=True) | {"version": live.version}
                )
                return _answer(found, exclude_none=True)
        return _problem(f"no live table {wanted!r}", 404)

    async def source(request: Request) -> Response:
        number = service.version
        version = await service.get_version(number) if number else None
        return _answer(Source(version=number, source=version.source if version else ""))

    async def validate(request: Request) -> Response:
        text = await _text(request)
        if isinstance(text, Response):
            return text
        try:
            compiled = await service.check(text)
        except ValidationFailed as exc:
            return _rejected(exc)
        return _answer(Checked(tables=[t.id for t in compiled.document.tables]))

    async def publish(request: Request) -> Response:
        text = await _text(request)
        if isinstance(text, Response):
            return text
        comment = request.headers.get("x-comment") or request.query_params.get("comment") or ""
        try:
            version = await service.publish(text, _author(request), comment[:MAX_COMMENT])
        except ValidationFailed as exc:
            return _rejected(exc)
        return _answer(_published(version), 201)

    async def list_versions(request: Request) -> Response:
        summaries = [
            VersionSummary.model_validate(v.summary()) for v in await service.list_versions()
        ]
        return _answer(Versions(live=service.version, versions=summaries))

    async def get_version(request: Request) -> Response:
        found = await service.get_version(_number(request))
        if found is None:
            return _problem("no such version", 404)
        detail = found.summary() | {"source": found.source, "diff": found.diff}
        return _answer(VersionDetail.model_validate(detail))

    async def rollback(request: Request) -> Response:
        try:
            done = await service.rollback(_number(request), _author(request))
        except ValidationFailed as exc:
            return _rejected(exc)
        if done is None:
            return _problem("no such version", 404)
        return _answer(_published(done), 201)

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
            return _problem(
                f"{problems}. Send "
                '{"url": "/v1/me/products?…", "visitor": "…", "segments": ["…"], '
                '"headers": {"…": "…"}}',
                400,
            )
        found = await service.explain(asked.visitor, asked.url, asked.segments, asked.headers)
        if "error" in found:
            return _problem(found["error"], 422)
        return _answer(Explanation.model_validate(found))

    async def stats(request: Request) -> Response:
        return _answer(Stats(service.stats))

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(openapi(service))

    explain_refused = Answer(
        "the URL is not a list route decisions rewrite, or no tables are live", Problem
    )
    return [
        Endpoint(
            "GET",
            "/openapi.json",
            openapi_json,
            "this document",
            {200: Answer("the OpenAPI 3.1 document", OpenApiDocument)},
            public=True,
        ),
        Endpoint(
            "GET",
            "/tables",
            list_tables,
            "live tables with their version, and why the last file edit was refused",
            {200: Answer("the live tables", LiveTables)},
        ),
        Endpoint(
            "GET",
            "/tables/{table_id}",
            get_table,
            "one live table as written",
            {
                200: Answer("the table", LiveTable),
                404: Answer("no live table has this id", Problem),
            },
        ),
        Endpoint(
            "GET",
            "/source",
            source,
            "the live version's document text",
            {200: Answer("the source; empty when nothing is live", Source)},
        ),
        Endpoint(
            "POST",
            "/validate",
            validate,
            "dry run: validate a document without publishing it",
            {200: Answer("valid", Checked), 400: NOT_UTF8, 413: TOO_LARGE, 422: REFUSED},
            body=DOCUMENT,
        ),
        Endpoint(
            "POST",
            "/publish",
            publish,
            "publish a document as a new live version",
            {201: Answer("live", Published), 400: NOT_UTF8, 413: TOO_LARGE, 422: REFUSED},
            body=DOCUMENT,
            params=AUTHOR + COMMENT,
        ),
        Endpoint(
            "GET",
            "/versions",
            list_versions,
            "every published version, newest first",
            {200: Answer("the versions", Versions)},
        ),
        Endpoint(
            "GET",
            "/versions/{version:int}",
            get_version,
            "one version with its source and its diff against the one before",
            {200: Answer("the version", VersionDetail), 404: NO_VERSION},
        ),
        Endpoint(
            "POST",
            "/rollback/{version:int}",
            rollback,
            "publish an old version's source again, as a new version",
            {
                201: Answer("live", Published),
                404: NO_VERSION,
                422: Answer("that version no longer validates", Rejected),
            },
            params=AUTHOR,
        ),
        Endpoint(
            "POST",
            "/explain",
            explain,
            "what this shopper would get for this storefront call, and why",
            {
                200: Answer("the explanation", Explanation),
                400: Answer("the body is not the JSON object described", Problem),
                413: TOO_LARGE,
                422: explain_refused,
            },
            body=Body(ExplainBody),
        ),
        Endpoint("GET", "/stats", stats, "decision counters", {200: Answer("the counters", Stats)}),
    ]


async def refusal(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, wrong method) as JSON, like every other answer.
    The gateway's service app uses it too: a path its /admin mount cannot match (a newline in
    it) is refused there, before the admin app sees it."""
    assert isinstance(exc, HTTPException)
    return _problem(str(exc.detail), exc.status_code, exc.headers)
