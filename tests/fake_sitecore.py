"""A fake Sitecore (CDP Stream API, Send, Discover) and webhook receiver on a real socket."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

from starlette.types import Receive, Scope, Send

from tests.wire import read_body, reply


class FakeSitecore:
    """Records every request. `…/v1.2/browser/create.json` mints browser ids;
    `/cdp/v2/callFlows` answers `{"segments": [...]}` from `segments`, per guest as the request
    names it (`ordercloud:acme-jane`, `email:…` or `browser:<id>`); everything else answers 201
    (CDP) or 200, unless `failures[prefix]` holds statuses to answer first."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.failures: dict[str, list[int]] = {}
        self.segments: dict[str, list[str]] = {}
        self.lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        path: str = scope["path"]
        with self.lock:
            planned = next((v for k, v in self.failures.items() if path.startswith(k) and v), None)
            status = planned.pop(0) if planned else None
            if status is None:
                self.requests.append(
                    {
                        "path": path,
                        "query": scope["query_string"].decode(),
                        "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
                        "body": body,
                    }
                )
        if status is None:
            status = 201 if path.endswith("/v1.2/events") else 200
        if path.endswith("/v1.2/browser/create.json"):
            payload = {"status": "OK", "ref": str(uuid.uuid4()), "customer_ref": str(uuid.uuid4())}
        elif path.endswith("/v2/callFlows"):
            payload = {"segments": self.segments.get(_guest(json.loads(body)), [])}
        else:
            payload = {"status": "OK"}
        await reply(send, status, json.dumps(payload).encode())

    def received(self, prefix: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["path"].startswith(prefix)]

    def json(self, prefix: str) -> list[Any]:
        return [json.loads(r["body"]) for r in self.received(prefix) if r["body"]]


def _guest(flow: dict[str, Any]) -> str:
    """The guest a callFlows request names: by identifier, email or browser id (one of them)."""
    named = [key for key in ("identifiers", "email", "browserId") if key in flow]
    assert len(named) == 1, f"callFlows must name the guest one way: {named}"
    if "identifiers" in flow:
        return f"{flow['identifiers']['provider']}:{flow['identifiers']['id']}"
    if "email" in flow:
        return f"email:{flow['email']}"
    return f"browser:{flow['browserId']}"
