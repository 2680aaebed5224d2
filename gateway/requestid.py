"""The request id: one value per storefront call that ties its log lines, its upstream call and
the events it records together.

A client (or the load balancer in front) may send `X-Request-Id`; the gateway keeps it when it is
short and made of safe characters, so it can go into headers and log lines as it is, and mints
one otherwise. It is echoed on the response and passed upstream on the proxied call. Within the
call it lives in a context variable: tasks the call starts inherit it, so their log lines carry it.
"""

from __future__ import annotations

import os
import re
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-request-id"
MAX_LENGTH = 128
_SAFE = re.compile(rb"[A-Za-z0-9._:+/=@-]{1,%d}" % MAX_LENGTH)

current: ContextVar[str | None] = ContextVar("request_id", default=None)


def mint() -> str:
    return os.urandom(16).hex()


def accept(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's id when it is safe to repeat, else a new one."""
    for name, value in headers:
        if name.lower() == HEADER:
            return value.decode("ascii") if _SAFE.fullmatch(value) else mint()
    return mint()


class RequestIds:
    """ASGI middleware: sets `current` for the call and echoes the id on the response (replacing
    any the upstream sent: the one that ties the call together is ours)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = accept(scope["headers"])
        echoed = (HEADER, rid.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", ()) if h[0].lower() != HEADER]
                message["headers"] = [*headers, echoed]
            await send(message)

        token = current.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            current.reset(token)
