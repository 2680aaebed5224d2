"""A fake OrderCloud upstream for proxy tests: echoes what it received, or misbehaves on request."""

from __future__ import annotations

import asyncio
import gzip
import json

from starlette.types import Receive, Scope, Send

from tests.tokens import JWK, KID, ME
from tests.wire import read_body, reply

GZIPPED = gzip.compress(b'{"Items":[]}' * 100)
BIG_CHUNK = b"x" * 65536


class FakeUpstream:
    """`/v1/echo...` echoes; `/v1/slow` stalls; `/v1/delay/MS` echoes after MS milliseconds;
    `/v1/big` streams 20 MB; `/v1/status/N` answers N;
    `/v1/gzip` answers a gzipped body; `/v1/hop` answers with hop-by-hop headers;
    `/oauth/certs/k1` is the tests' signing key and `/v1/me` is jane (tests/tokens.py);
    an `X-Fake-Status: N` request header makes any route answer N."""

    def __init__(self) -> None:
        self.seen: list[dict[str, object]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        record = {
            "method": scope["method"],
            "raw_path": scope["raw_path"].decode("latin-1"),
            "query": scope["query_string"].decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
            "body": body.decode("latin-1"),
        }
        self.seen.append(record)
        path = scope["path"]
        if path == "/v1/slow":
            await asyncio.sleep(5)
        if path.startswith("/v1/delay/"):
            await asyncio.sleep(int(path.rsplit("/", 1)[1]) / 1000)
        if path == "/v1/big":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/octet-stream"),
                        (b"content-length", str(320 * len(BIG_CHUNK)).encode()),
                    ],
                }
            )
            for _ in range(320):
                await send({"type": "http.response.body", "body": BIG_CHUNK, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        if path == f"/oauth/certs/{KID}":
            await reply(send, 200, json.dumps(JWK).encode())
            return
        if path.startswith("/oauth/certs/"):
            await reply(send, 404, json.dumps({"Errors": [{"ErrorCode": "NotFound"}]}).encode())
            return
        if path == "/v1/me":
            await reply(send, 200, json.dumps(ME).encode())
            return
        if path == "/v1/gzip":
            await reply(send, 200, GZIPPED, [(b"content-encoding", b"gzip")])
            return
        if path == "/v1/hop":
            await reply(
                send,
                200,
                b"{}",
                [
                    (b"connection", b"x-internal"),
                    (b"x-internal", b"1"),
                    (b"keep-alive", b"timeout=5"),
                    (b"x-kept", b"yes"),
                ],
            )
            return
        wanted = dict(scope["headers"]).get(b"x-fake-status")
        if wanted is not None:  # any route answers this status: e.g. OrderCloud's 401
            await reply(send, int(wanted), json.dumps({"Errors": [{"ErrorCode": "Fake"}]}).encode())
            return
        if path.startswith("/v1/status/"):
            status = int(path.rsplit("/", 1)[1])
            await reply(send, status, json.dumps({"Errors": [{"ErrorCode": "Boom"}]}).encode(), [])
            return
        status = 204 if scope["method"] == "DELETE" else 200
        payload = b"" if status == 204 else json.dumps(record).encode()
        await reply(send, status, payload, [(b"x-upstream", b"fake"), (b"etag", b'"abc"')])
