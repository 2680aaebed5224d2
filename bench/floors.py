"""The two minimal pass-through proxies the gateway is measured against: Starlette with httpx, and
Starlette with aiohttp (the floor to beat). Each streams the request and the answer and drops
hop-by-hop headers, nothing else.

    python bench/floors.py httpx|aiohttp --port PORT --upstream-url URL
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


def _hop_by_hop(headers: Iterable[tuple[str, str]]) -> set[str]:
    """RFC 9110 §7.6.1 hop-by-hop names, plus any named in Connection (all lower case)."""
    names = set(HOP_BY_HOP)
    for name, value in headers:
        if name.lower() == "connection":
            names.update(token.strip().lower() for token in value.split(","))
    return names


def _forward_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    pairs = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in raw]
    drop = _hop_by_hop(pairs) | {"host"}
    return [(name, value) for name, value in pairs if name.lower() not in drop]


def _back_headers(pairs: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    drop = _hop_by_hop(pairs)
    return [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in pairs
        if name.lower() not in drop
    ]


def _has_body(headers: list[tuple[str, str]], raw: list[tuple[bytes, bytes]]) -> bool:
    return any(name.lower() == b"transfer-encoding" for name, _ in raw) or any(
        name.lower() == "content-length" and value.strip() != "0" for name, value in headers
    )


def _target(scope: dict[str, Any]) -> str:
    """The raw path and query exactly as received."""
    path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"")
    return (path + (b"?" + query if query else b"")).decode("latin-1")


def httpx_app(upstream: str) -> Any:
    """Starlette + httpx: stream the request up and the response back, nothing else."""
    import httpx
    from starlette.applications import Starlette
    from starlette.background import BackgroundTask
    from starlette.requests import Request
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    clients: list[httpx.AsyncClient] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
        async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:
            clients.append(client)
            yield

    async def forward(request: Request) -> StreamingResponse:
        raw = request.scope["headers"]
        headers = _forward_headers(raw)
        body = request.stream() if _has_body(headers, raw) else None
        outbound = clients[0].build_request(
            request.method, upstream + _target(request.scope), headers=headers, content=body
        )
        answer = await clients[0].send(outbound, stream=True)
        response = StreamingResponse(
            answer.aiter_raw(),
            status_code=answer.status_code,
            background=BackgroundTask(answer.aclose),
        )
        response.raw_headers = _back_headers(answer.headers.multi_items())
        return response

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)], lifespan=lifespan)


def aiohttp_app(upstream: str) -> Any:
    """Starlette + aiohttp's client: stream the request up and the response back, nothing else."""
    import aiohttp
    from starlette.applications import Starlette
    from starlette.background import BackgroundTask
    from starlette.requests import Request
    from starlette.responses import StreamingResponse
    from starlette.routing import Route
    from yarl import URL

    sessions: list[aiohttp.ClientSession] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=256)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=30)
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False
        ) as session:
            sessions.append(session)
            yield

    async def forward(request: Request) -> StreamingResponse:
        raw = request.scope["headers"]
        headers = _forward_headers(raw)
        body = request.stream() if _has_body(headers, raw) else None
        answer = await sessions[0].request(
            request.method,
            URL(upstream + _target(request.scope), encoded=True),
            headers=headers,
            data=body,
            allow_redirects=False,
        )
        response = StreamingResponse(
            answer.content.iter_any(),
            status_code=answer.status,
            background=BackgroundTask(answer.release),
        )
        response.raw_headers = _back_headers(
            [
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in answer.raw_headers
            ]
        )
        return response

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)], lifespan=lifespan)


def serve_floor(kind: str, port: int, upstream: str) -> None:
    """Run one minimal proxy as a single uvicorn worker (this is the child process's whole job)."""
    import uvicorn

    app = httpx_app(upstream) if kind == "httpx" else aiohttp_app(upstream)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        server_header=False,  # the upstream's Server and Date headers pass through instead
        date_header=False,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["httpx", "aiohttp"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream-url", required=True)
    options = parser.parse_args()
    serve_floor(options.kind, options.port, options.upstream_url)
