"""Errors the gateway itself produces, in OrderCloud's shape so the official SDK reports them."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import Send


def error_body(code: str, message: str, data: dict[str, Any] | None = None) -> bytes:
    return json.dumps({"Errors": [{"ErrorCode": code, "Message": message, "Data": data}]}).encode()


async def send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    data: dict[str, Any] | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = error_body(code, message, data)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
