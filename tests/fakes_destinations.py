"""Fakes for the tracking tests: calls, an OrderCloud upstream, and scriptable HTTP sinks."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
from starlette.datastructures import Headers

from gateway.call import Call
from gateway.identity import Visitor
from gateway.operations import recognise

ANON = Visitor(id="anon-o1", anonymous=True, anon_order_id="o1")
JANE = Visitor(
    id="b1-jane",
    anonymous=False,
    buyer_id="b1",
    user_id="jane",
    email="jane@example.com",
    language="en",
    currency="eur",
)


def token(claims: dict[str, Any]) -> str:
    return jwt.encode({"exp": int(time.time()) + 3600, **claims}, "k" * 32, algorithm="HS256")


def make_call(
    method: str,
    path: str,
    query: str = "",
    *,
    visitor: Visitor | None = ANON,
    bearer: str | None = "shopper-token",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    at: float = 1_700_000_000.0,
) -> Call:
    operation = recognise(method, path)
    assert operation is not None, (method, path)
    base = {"user-agent": "Mozilla/5.0 (X11) Firefox/120", "referer": "https://shop.example/p/1"}
    base.update(headers or {})
    return Call(
        operation=operation,
        method=method,
        path=path,
        query=query,
        headers=Headers(base),
        client="203.0.113.5",
        token=bearer,
        visitor=visitor,
        received_at=at,
        body=body,
    )


def answer(value: Any) -> bytes:
    return json.dumps(value).encode()


class FakeUpstream:
    """`get_json` over a dict of path -> (status, json); remembers (path, token) per call.
    While `gate` is set to an unset event, answers wait for it (a slow OrderCloud)."""

    def __init__(self, routes: dict[str, tuple[int, Any]]) -> None:
        self.routes = routes
        self.calls: list[tuple[str, str | None]] = []
        self.gate: asyncio.Event | None = None

    async def get_json(
        self, path_and_query: str, token: str | None, timeout: float | None = None
    ) -> tuple[int, Any]:
        self.calls.append((path_and_query, token))
        if self.gate is not None:
            await self.gate.wait()
        return self.routes.get(path_and_query, (404, {"Errors": [{"ErrorCode": "NotFound"}]}))


class FakeIdentity:
    def __init__(self, visitors: dict[str, Visitor]) -> None:
        self.visitors = visitors

    async def visitor(self, token: str) -> Visitor | None:
        return self.visitors.get(token)


Responder = Callable[[httpx.Request], httpx.Response]


class Sink:
    """An httpx transport that records every request and answers from a script.

    `script` is consulted per request: a list of statuses/exceptions/responders used in turn
    (the last one repeats), so "500 then 200" is `[500, 200]`.
    """

    def __init__(self, script: list[Any] | None = None) -> None:
        self.script = list(script or [200])
        self.requests: list[httpx.Request] = []
        self.bodies: list[bytes] = []
        self.attempts = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.attempts += 1
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, Exception):
            raise step
        if callable(step):
            response = step(request)
        elif isinstance(step, tuple):
            response = httpx.Response(step[0], headers=step[1])
        else:
            response = httpx.Response(step, json={"status": "OK", "ref": "minted-bid"})
        if 200 <= response.status_code < 300:
            self.requests.append(request)
            self.bodies.append(request.content)
        return response

    def json(self) -> list[Any]:
        return [json.loads(b) for b in self.bodies if b]


def client_for(routes: dict[str, Sink]) -> httpx.AsyncClient:
    """One AsyncClient whose requests go to the Sink registered for their host."""

    def handle(request: httpx.Request) -> httpx.Response:
        return routes[request.url.host](request)

    return httpx.AsyncClient(transport=httpx.MockTransport(handle))
