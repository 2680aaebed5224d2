"""The one upstream HTTP client: a pooled aiohttp session behind a small seam.

aiohttp's client is measured to hold under concurrency where httpx's default transport collapses
(see bench/proxy.py and ../shared/reference/proxy-baseline.md), so the proxy hop uses it. Paths and
query strings go out exactly as received (`encoded=True`): the gateway never re-encodes a URL.
Only the configured upstream is ever called: callers pass a path, never a URL.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any

import aiohttp
from yarl import URL

# aiohttp adds these unless told not to; a transparent proxy must add nothing the shopper didn't send.
_NO_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")

# Told each call's method, status (None: no answer) and seconds until the answer's headers.
Observer = Callable[[str, int | None, float], None]


class UpstreamError(Exception):
    """The upstream could not be reached (502) or did not answer in time (504)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class UpstreamResponse:
    """A streaming upstream answer: status, headers (raw pairs), and the body as raw chunks."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers: list[tuple[bytes, bytes]] = list(response.raw_headers)

    async def chunks(self) -> AsyncIterator[bytes]:
        """Raw body bytes as they arrive; content encodings are passed through untouched."""
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except TimeoutError:
            raise UpstreamError(504, "OrderCloud did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(
                502, f"OrderCloud connection failed: {type(exc).__name__}"
            ) from None

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    def close(self) -> None:
        self._response.release()


class Upstream:
    def __init__(
        self,
        base_url: str,
        *,
        connections: int = 256,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        observe: Observer | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.observe = observe
        self._base = URL(self.base_url)
        self._limits = (connections, connect_timeout, read_timeout)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connections, connect_timeout, read_timeout = self._limits
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=connections, ttl_dns_cache=300, keepalive_timeout=15
            ),
            timeout=aiohttp.ClientTimeout(
                total=None, connect=connect_timeout, sock_read=read_timeout
            ),
            auto_decompress=False,
            skip_auto_headers=_NO_AUTO_HEADERS,
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def url(self, path_and_query: str) -> URL:
        """The upstream URL for a raw origin-form target, kept byte-for-byte."""
        return URL(self.base_url + path_and_query, encoded=True)

    async def send(
        self,
        method: str,
        path_and_query: str,
        headers: list[tuple[str, str]],
        body: bytes | AsyncIterable[bytes] | None,
    ) -> UpstreamResponse:
        """Start one upstream request; the caller must `close()` the response."""
        assert self._session is not None, "Upstream.start() was not awaited"
        started = time.perf_counter()
        status: int | None = None
        try:
            response = await self._session.request(
                method,
                self.url(path_and_query),
                headers=headers,
                data=body,
                allow_redirects=False,
                compress=None,
            )
            status = response.status
        except TimeoutError:
            raise UpstreamError(504, "OrderCloud did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(502, f"OrderCloud is unreachable: {type(exc).__name__}") from None
        finally:
            if self.observe is not None:
                self.observe(method, status, time.perf_counter() - started)
        return UpstreamResponse(response)

    async def get_json(
        self, path_and_query: str, token: str | None, timeout: float | None = None
    ) -> tuple[int, Any]:
        """GET a JSON resource with the shopper's token (identity, hydration). Never raises for
        HTTP errors; raises UpstreamError when the upstream is unreachable or slow."""
        headers = [("Accept", "application/json")]
        if token:
            headers.append(("Authorization", f"Bearer {token}"))
        try:
            return await asyncio.wait_for(self._get(path_and_query, headers), timeout)
        except TimeoutError:
            raise UpstreamError(504, "OrderCloud did not answer in time") from None

    async def _get(self, path_and_query: str, headers: list[tuple[str, str]]) -> tuple[int, Any]:
        response = await self.send("GET", path_and_query, headers, None)
        try:
            raw = await response.read()
        finally:
            response.close()
        try:
            return response.status, json.loads(raw.decode("utf-8-sig")) if raw else None
        except ValueError:
            return response.status, None
