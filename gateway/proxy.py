"""The transparent reverse proxy: a pure ASGI app that streams OrderCloud calls through.

The raw path and query go upstream byte-for-byte, bodies stream both ways, hop-by-hop headers are
dropped, and the shopper's `Authorization` goes up unchanged. Two hooks ride along and fail open:
a `Decider` may rewrite a GET list query before forwarding, and a `Tracker` records the events of
a 2xx answer before its last byte goes back to the shopper.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from urllib.parse import unquote

from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from gateway import requestid
from gateway.accesslog import log_request
from gateway.call import Call, Decider, Decision, Tracker
from gateway.errors import send_error
from gateway.headers import bearer_token
from gateway.identity import Identity, Visitor, shopper_key
from gateway.metrics import RequestMetrics
from gateway.operations import Operation, recognise
from gateway.upstream import Upstream, UpstreamError, UpstreamResponse

log = logging.getLogger("ocgateway.proxy")

# RFC 9110 §7.6.1 connection-specific fields, plus the proxy-only ones RFC 2616 listed.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"proxy-connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)
# Replaced by the gateway's own values on the way up.
_REPLACED = frozenset(
    {b"host", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", requestid.HEADER}
)
_PREFIXES = ("/v1/", "/oauth/")
_DECODINGS = 4  # percent-decodings of a path checked for dot segments and separators
# A dot segment (also one a query or fragment would end), a backslash, an encoded separator or NUL,
# a control character.
_UNSAFE_PATH = re.compile(r"(^|/)\.\.?(/|$|[?#])|\\|%2f|%5c|%00|[\x00-\x1f\x7f]", re.IGNORECASE)
_BUFFER_LIMIT = 8 * 1024 * 1024  # largest answer held in memory for tracking or a pin reorder
_SMALL_BODY = 64 * 1024  # request bodies up to this are read whole (one upstream write)
_DECISION_SLACK = 0.1  # seconds a decision may take past the personalization budget


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    """The shopper disconnected before their request body arrived: nothing to answer."""


def _connection_tokens(headers: list[tuple[bytes, bytes]]) -> frozenset[bytes]:
    named = [
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.split(b",")
    ]
    return HOP_BY_HOP.union(named) if named else HOP_BY_HOP


def safe_path(raw_path: str) -> bool:
    """Only origin-form paths under /v1/ or /oauth/, with no dot segments or encoded separators,
    however many times a server behind us decodes it: `%252e%252e` is `..` to one that decodes
    twice, so every decoding is checked until nothing changes (a path still changing after a few
    rounds is refused; no storefront writes one)."""
    if not raw_path.lower().startswith(_PREFIXES) or "?" in raw_path or "#" in raw_path:
        return False  # a raw ? or # would end the path at the upstream client: not a path
    path = raw_path
    for _ in range(_DECODINGS):
        if _UNSAFE_PATH.search(path) is not None:
            return False
        decoded = unquote(path)
        if decoded == path:
            return True
        path = decoded
    return False


class Proxy:
    def __init__(
        self,
        upstream: Upstream,
        identity: Identity,
        *,
        max_body_bytes: int,
        trusted_proxies: frozenset[str] = frozenset({"127.0.0.1"}),
        tracker: Tracker | None = None,
        decider: Decider | None = None,
        identity_budget: float = 0.5,
        metrics: RequestMetrics | None = None,
    ) -> None:
        self.upstream = upstream
        self.identity = identity
        self.tracker = tracker
        self.decider = decider
        self.max_body_bytes = max_body_bytes
        self.trusted_proxies = trusted_proxies
        self.identity_budget = identity_budget
        self.metrics = metrics
        self.counters: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        method: str = scope["method"]
        raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        query = scope["query_string"].decode("latin-1")
        operation = recognise(method, raw_path)
        try:
            status = await self._handle(scope, receive, send, method, raw_path, query, operation)
        except ClientGone:
            self.counters["client_gone"] += 1
            log.info("client disconnected before its request body arrived: %s", method)
            status = 499
        elapsed = time.perf_counter() - started
        if self.metrics is not None:
            self.metrics.observe(method, operation.route if operation else None, status, elapsed)
        log_request(method, raw_path, query, status, elapsed * 1000)

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        method: str,
        raw_path: str,
        query: str,
        operation: Operation | None,
    ) -> int:
        if not safe_path(raw_path):
            self.counters["rejected_path"] += 1
            data = {"ObjectType": "Route", "ObjectID": raw_path[:200]}
            await send_error(send, 404, "NotFound", "No such OrderCloud route.", data)
            return 404

        request_headers: list[tuple[bytes, bytes]] = scope["headers"]
        headers = Headers(raw=request_headers)
        length_header = headers.get("content-length")
        try:
            length = int(length_header) if length_header is not None else None
        except ValueError:
            await send_error(send, 400, "Request.InvalidRequestBody", "Bad Content-Length.")
            return 400
        if length is not None and length > self.max_body_bytes:
            return await self._too_large(send)

        call = self._call(scope, method, raw_path, query, headers, operation)
        tracked = call is not None and self.tracker is not None and self._wants(call)
        decision: Decision | None = None
        if call is not None and self.decider is not None and self._applies(call):
            decision = await self._decide(call)
            if decision is not None:
                query = decision.query

        body: bytes | AsyncIterator[bytes] | None = None
        if length is None and "transfer-encoding" in headers:
            # No declared length: read it all (up to the limit) so an oversized body is refused
            # with 413 before a byte of it goes upstream.
            try:
                body = await _read_body(receive, self.max_body_bytes)
            except BodyTooLarge:
                return await self._too_large(send)
        elif length is not None:
            if length <= _SMALL_BODY or tracked:
                body = await _read_body(receive, self.max_body_bytes)
            else:
                body = _stream_body(receive)  # declared length under the limit: stream it
        if call is not None and isinstance(body, bytes):
            call.body = body

        upstream_headers = self._upstream_headers(scope, request_headers, headers, decision)
        target = f"{raw_path}?{query}" if query else raw_path
        try:
            response = await self.upstream.send(method, target, upstream_headers, body)
        except UpstreamError as exc:
            self.counters[f"upstream_{exc.status}"] += 1
            code = "Gateway.UpstreamTimeout" if exc.status == 504 else "Gateway.UpstreamUnavailable"
            await send_error(send, exc.status, code, str(exc), {"Upstream": self.upstream.base_url})
            return exc.status

        try:
            ok = 200 <= response.status < 300
            response_headers = _response_headers(response.headers)
            if not ok:
                decision = None  # OrderCloud refused the call: nothing was personalized or seen
            if tracked and (not ok or call is None or not await self._trusted(call)):
                tracked = False
            if ok and (tracked or (decision is not None and decision.reorder is not None)):
                await self._send_buffered(send, response, response_headers, call, decision, tracked)
            else:
                if decision is not None:
                    response_headers = _personalized(response_headers, decision)
                start = {"status": response.status, "headers": response_headers}
                await send({"type": "http.response.start", **start})
                async for chunk in response.chunks():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if decision is not None and call is not None:
                    await self._record(call, response.status, None, decision)
                await send({"type": "http.response.body", "body": b""})
        except UpstreamError as exc:
            # The answer broke off after it started: nothing sensible can be sent any more.
            self.counters["upstream_broken"] += 1
            log.warning("upstream answer broke off: %s", exc)
        finally:
            response.close()
        return response.status

    def _call(
        self,
        scope: Scope,
        method: str,
        raw_path: str,
        query: str,
        headers: Headers,
        operation: Operation | None,
    ) -> Call | None:
        if operation is None or (self.tracker is None and self.decider is None):
            return None
        token = bearer_token(headers.get("authorization"))
        return Call(
            operation=operation,
            method=method,
            path=raw_path,
            query=query,
            headers=headers,
            client=self._client_ip(scope, headers),
            token=token,
            visitor=self.identity.peek(token),
            received_at=time.time(),
            request_id=requestid.current.get(),
        )

    def _wants(self, call: Call) -> bool:
        try:
            return self.tracker.wants(call)  # type: ignore[union-attr]
        except Exception:
            self._hook_failed("tracking")
            return False

    def _applies(self, call: Call) -> bool:
        try:
            return self.decider.applies(call)  # type: ignore[union-attr]
        except Exception:
            self._hook_failed("decisions")
            return False

    async def _decide(self, call: Call) -> Decision | None:
        if call.visitor is None and call.token:
            call.visitor = await self._visitor(call.token)
        if call.visitor is None:
            return None  # no verified shopper: nobody to personalize for
        call.shopper = call.shopper or call.visitor.key
        call.client_id = call.client_id or call.visitor.client_id
        try:
            # The budget bounds CDP and a login's profile inside decide(); this bounds the rest
            # (a store that hangs): a list call never waits much past the budget for a decision.
            return await asyncio.wait_for(
                self.decider.decide(call),  # type: ignore[union-attr]
                self.identity_budget + _DECISION_SLACK,
            )
        except TimeoutError:
            self.counters["decisions_timeouts"] += 1
            log.warning("decision took longer than its budget; the call goes on unchanged")
            return None
        except Exception:
            self._hook_failed("decisions")
            return None

    async def _trusted(self, call: Call) -> bool:
        """Whether a tracked call may be recorded: its token (if any) is one OrderCloud signed.
        A call without a token (a login) is identified later from the token OrderCloud issues."""
        if call.visitor is not None:
            call.shopper = call.shopper or call.visitor.key
            call.client_id = call.client_id or call.visitor.client_id
            return True
        if not call.token:
            return True
        try:
            claims = await self.identity.claims(call.token)
        except Exception:
            self._hook_failed("identity")
            return False
        if claims is None:
            return False
        call.shopper = shopper_key(claims)
        cid = claims.get("cid")
        call.client_id = cid[:256] if isinstance(cid, str) else None
        return True

    async def _record(
        self, call: Call, status: int, body: bytes | None, decision: Decision | None
    ) -> None:
        """Hand a 2xx call (and what its decision exposed) to the tracker; fails open."""
        exposures = decision.exposures if decision is not None else ()
        if exposures and self.metrics is not None:
            self.metrics.decided(exposures)
        if self.tracker is None or (body is None and not exposures):
            return
        try:
            await self.tracker.record(call, status, body, exposures)
        except Exception:
            self._hook_failed("tracking")

    async def _visitor(self, token: str) -> Visitor | None:
        try:
            return await asyncio.wait_for(self.identity.visitor(token), self.identity_budget)
        except Exception:
            self._hook_failed("identity")
            return None

    async def _send_buffered(
        self,
        send: Send,
        response: UpstreamResponse,
        headers: list[tuple[bytes, bytes]],
        call: Call | None,
        decision: Decision | None,
        tracked: bool,
    ) -> None:
        status = response.status
        chunks: list[bytes] = []
        size = 0
        stream = response.chunks()
        async for chunk in stream:
            chunks.append(chunk)
            size += len(chunk)
            if size > _BUFFER_LIMIT:  # too big to inspect: pass it on untouched
                if decision is not None:
                    headers = _personalized(headers, decision)
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send(
                    {"type": "http.response.body", "body": b"".join(chunks), "more_body": True}
                )
                async for rest in stream:
                    await send({"type": "http.response.body", "body": rest, "more_body": True})
                if call is not None:
                    await self._record(call, status, None, decision)
                await send({"type": "http.response.body", "body": b""})
                return
        body = b"".join(chunks)
        if decision is not None:
            headers = _personalized(headers, decision)
            if decision.reorder is not None and _identity_encoded(headers):
                try:
                    body = decision.reorder(body)
                    headers = _with_length(headers, len(body))
                except Exception:
                    self._hook_failed("decisions")
        if call is not None:
            await self._record(call, status, body if tracked else None, decision)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _hook_failed(self, hook: str) -> None:
        self.counters[f"{hook}_failures"] += 1
        if self.metrics is not None:
            self.metrics.hook_failed(hook)
        log.exception("%s hook failed; the call goes on unchanged", hook)

    def _client_ip(self, scope: Scope, headers: Headers) -> str | None:
        peer = scope.get("client")
        ip = peer[0] if peer else None
        forwarded = headers.get("x-forwarded-for")
        if forwarded and ip in self.trusted_proxies:
            return forwarded.split(",")[0].strip() or ip
        return ip

    def _upstream_headers(
        self,
        scope: Scope,
        raw: list[tuple[bytes, bytes]],
        headers: Headers,
        decision: Decision | None,
    ) -> list[tuple[str, str]]:
        drop = _connection_tokens(raw) | _REPLACED
        if decision is not None and decision.reorder is not None:
            drop = drop | {b"accept-encoding"}
        out = []
        for name, value in raw:
            if name.lower() in drop:
                continue
            try:  # the client library writes UTF-8: decoding as UTF-8 sends the same bytes on
                out.append((name.decode("latin-1"), value.decode("utf-8")))
            except UnicodeDecodeError:  # bytes UTF-8 cannot carry: dropped, never re-encoded
                self.counters["header_dropped"] += 1
        peer = scope.get("client")
        ip = peer[0] if peer else None
        prior = headers.get("x-forwarded-for") if ip in self.trusted_proxies else None
        if ip:
            out.append(("X-Forwarded-For", f"{prior}, {ip}" if prior else ip))
        out.append(("X-Forwarded-Proto", scope.get("scheme", "http")))
        host = headers.get("host")
        if host:
            out.append(("X-Forwarded-Host", host))
        if decision is not None and decision.reorder is not None:
            out.append(("Accept-Encoding", "identity"))
        rid = requestid.current.get()
        if rid:
            out.append(("X-Request-Id", rid))
        return out

    async def _too_large(self, send: Send) -> int:
        self.counters["body_too_large"] += 1
        await send_error(
            send,
            413,
            "Request.TooLarge",
            f"Request body is over the gateway's limit of {self.max_body_bytes} bytes.",
            {"MaxBytes": self.max_body_bytes},
        )
        return 413


def _response_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    drop = _connection_tokens(raw)
    return [(k.lower(), v) for k, v in raw if k.lower() not in drop]


def _personalized(
    headers: list[tuple[bytes, bytes]], decision: Decision
) -> list[tuple[bytes, bytes]]:
    kept = [(k, v) for k, v in headers if k not in (b"cache-control", b"x-decision")]
    return kept + [
        (b"x-decision", decision.header.encode("latin-1", "replace")),
        (b"cache-control", b"private, no-store"),
    ]


def _identity_encoded(headers: list[tuple[bytes, bytes]]) -> bool:
    return all(k != b"content-encoding" or v.strip().lower() == b"identity" for k, v in headers)


def _with_length(headers: list[tuple[bytes, bytes]], length: int) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in headers if k != b"content-length"] + [
        (b"content-length", str(length).encode())
    ]


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


async def _stream_body(receive: Receive) -> AsyncIterator[bytes]:
    """A body of declared length (the server enforces it) as it arrives."""
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone  # aborts the upstream request: no truncated body is ever sent
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        more = message.get("more_body", False)
