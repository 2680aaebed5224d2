"""Routes declared once, as data: the Starlette routes and the OpenAPI document are both built
from the same `Endpoint` list, so the document cannot describe a route, status or body that the
app does not serve.

An endpoint names its handler, the statuses it answers with (each with a pydantic model), its
request body and its header and query parameters. Path parameters come from the Starlette path
itself (`{version:int}` is a non-negative integer). Endpoints behind the bearer guard get the
guard's own answers (401 without the token, 503 while the API is closed) added here, where the
guard is applied.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

Handler = Callable[[Request], Awaitable[Response]]
Guard = Callable[[Handler], Handler]

_REF = "#/components/schemas/{model}"
_PATH_PARAM = re.compile(r"\{(\w+)(?::(\w+))?\}")
# Starlette's convertors as JSON Schema: what each one matches, so a value outside it is a 404.
_CONVERTORS: dict[str, dict[str, Any]] = {
    "str": {"type": "string", "minLength": 1},
    "int": {"type": "integer", "minimum": 0},
}


@dataclass(frozen=True, slots=True)
class Answer:
    """One status a route answers with; `model` is the JSON body's shape."""

    description: str
    model: type[BaseModel]
    headers: Mapping[str, str] = field(default_factory=dict)  # name -> description


@dataclass(frozen=True, slots=True)
class Body:
    """A request body: its schema and the media types the handler accepts for it."""

    model: type[BaseModel]
    media_types: tuple[str, ...] = ("application/json",)
    description: str = ""


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    where: Literal["header", "query"]
    description: str
    max_length: int | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    path: str  # a Starlette path: `/versions/{version:int}`
    handler: Handler
    summary: str
    answers: Mapping[int, Answer]
    body: Body | None = None
    params: tuple[Param, ...] = ()
    public: bool = False  # served without the bearer guard


def routes(endpoints: Iterable[Endpoint], guard: Guard) -> list[Route]:
    """One Starlette route per endpoint; guarded unless public."""
    return [
        Route(e.path, e.handler if e.public else guard(e.handler), methods=[e.method])
        for e in endpoints
    ]


def document(
    endpoints: Iterable[Endpoint],
    *,
    title: str,
    version: str,
    server: str,
    guard_answers: Mapping[int, Answer],
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of these endpoints, served under `server`.

    Request bodies are described as the handlers validate them, responses as they serialise
    them; pydantic names the two apart (`Then-Input`, `Then-Output`) where they differ."""
    endpoints = list(endpoints)
    answered = [dict(e.answers) if e.public else {**guard_answers, **e.answers} for e in endpoints]
    keys: set[tuple[type[BaseModel], JsonSchemaMode]] = {
        (a.model, "serialization") for answers in answered for a in answers.values()
    }
    keys |= {(e.body.model, "validation") for e in endpoints if e.body is not None}
    refs, defs = models_json_schema(
        sorted(keys, key=lambda k: (k[0].__name__, k[1])), by_alias=True, ref_template=_REF
    )
    paths: dict[str, dict[str, Any]] = {}
    for endpoint, answers in zip(endpoints, answered, strict=True):
        operation: dict[str, Any] = {
            "operationId": endpoint.handler.__name__,
            "summary": endpoint.summary,
            "parameters": _path_params(endpoint.path) + [_param(p) for p in endpoint.params],
            "responses": {
                str(status): _response(answer, refs[(answer.model, "serialization")])
                for status, answer in sorted(answers.items())
            },
        }
        if endpoint.body is not None:
            schema = refs[(endpoint.body.model, "validation")]
            operation["requestBody"] = {
                "required": True,
                "description": endpoint.body.description,
                "content": {media: {"schema": schema} for media in endpoint.body.media_types},
            }
        if endpoint.public:
            operation["security"] = []
        template = _PATH_PARAM.sub(r"{\1}", endpoint.path)
        paths.setdefault(template, {})[endpoint.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "servers": [{"url": server}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _path_params(path: str) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": _CONVERTORS[convertor or "str"],
        }
        for name, convertor in _PATH_PARAM.findall(path)
    ]


def _param(param: Param) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if param.max_length is not None:
        schema["maxLength"] = param.max_length
    return {
        "name": param.name,
        "in": param.where,
        "required": False,
        "description": param.description,
        "schema": schema,
    }


def _response(answer: Answer, schema: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": answer.description,
        "content": {"application/json": {"schema": schema}},
    }
    if answer.headers:
        out["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in answer.headers.items()
        }
    return out
