"""A fake CDP Batch API on a real socket: allocate, pre-signed upload, status, error log.

It checks what the real service checks (Basic auth, the file's MD5 and size, gzip of JSON lines)
and loads records by `ref`, so a second load of the same orders replaces them instead of adding.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import threading
from typing import Any

from starlette.types import Receive, Scope, Send

from tests.wire import read_body, reply


class FakeCdpBatch:
    """`fail_next` makes the next batch end in "error" with a log of its first record's ref."""

    def __init__(self, client_key: str, api_token: str) -> None:
        credentials = base64.b64encode(f"{client_key}:{api_token}".encode()).decode()
        self.authorization = f"Basic {credentials}"
        self.batches: dict[str, dict[str, Any]] = {}
        self.records: dict[str, dict[str, Any]] = {}  # the tenant's orders, by ref
        self.requests: list[tuple[str, str]] = []
        self.fail_next = False
        self.lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        method, path = scope["method"], scope["path"]
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        host, port = scope["server"]
        with self.lock:
            self.requests.append((method, path))
            status, answer = self._answer(method, path, headers, body, f"http://{host}:{port}")
        await reply(
            send, status, answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        )

    def _answer(
        self, method: str, path: str, headers: dict[str, str], body: bytes, base: str
    ) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if parts[:2] == ["v2", "batches"] and len(parts) == 3:
            if headers.get("authorization") != self.authorization:
                return 401, {"message": "unauthorized"}
            batch_id = parts[2]
            if method == "PUT":
                wanted = json.loads(body)
                self.batches[batch_id] = {
                    "checksum": wanted["checksum"],
                    "size": wanted["size"],
                    "allocations": self.batches.get(batch_id, {}).get("allocations", 0) + 1,
                    "uploads": self.batches.get(batch_id, {}).get("uploads", 0),
                    "code": "uploading",
                }
                href = f"{base}/upload/{batch_id}?signature=x"
                location = {"href": href, "expiry": "2999-01-01T00:00:00.000Z"}
                return 201, {"ref": batch_id, "location": location, "status": {"code": "uploading"}}
            if method == "GET" and batch_id in self.batches:
                return 200, self._poll(batch_id, base)
        if parts[0] == "upload" and method == "PUT":
            return self._upload(parts[1], headers, body)
        if parts[0] == "log":
            return 200, self.batches[parts[1]]["log"].encode()
        return 404, {"message": "not found"}

    def _upload(self, batch_id: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        batch = self.batches.get(batch_id)
        if batch is None or "authorization" in headers:
            return 403, b"<Error>AccessDenied</Error>"
        md5 = hashlib.md5(body).digest()
        if (
            headers.get("content-type") != "application/gzip"
            or md5.hex() != batch["checksum"]
            or headers.get("content-md5") != base64.b64encode(md5).decode()
            or len(body) != batch["size"]
        ):
            return 400, b"<Error>BadDigest</Error>"
        batch.update(file=body, uploads=batch["uploads"] + 1, code="processing", polls=0)
        return 200, b""

    def _poll(self, batch_id: str, base: str) -> dict[str, Any]:
        batch = self.batches[batch_id]
        if batch["code"] == "processing":
            batch["polls"] += 1
            if batch["polls"] > 1:  # one "processing" answer first, as a real load takes time
                self._load(batch)
        status: dict[str, Any] = {"code": batch["code"]}
        if batch.get("log"):
            status["log"] = f"{base}/log/{batch_id}"
        return {"ref": batch_id, "status": status}

    def _load(self, batch: dict[str, Any]) -> None:
        lines = gzip.decompress(batch["file"]).decode().splitlines()
        loaded = [json.loads(line) for line in lines]
        if self.fail_next:
            self.fail_next = False
            batch.update(code="error", log=f"{loaded[0]['ref']}: pointOfSale is not valid\n")
            return
        for record in loaded:
            assert record["schema"] == "order" and record["mode"] == "upsert"
            self.records[record["ref"]] = record
        batch["code"] = "success"

    def count(self, method: str, prefix: str) -> int:
        with self.lock:
            return sum(1 for m, p in self.requests if m == method and p.startswith(prefix))
