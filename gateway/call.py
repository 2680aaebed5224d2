"""One proxied call as tracking and decisions see it, and the two hooks the proxy calls.

The proxy knows nothing of events or tables: it hands a `Call` to a `Decider` before forwarding a
list query and to a `Tracker` after a 2xx answer. Both hooks fail open: the proxy catches, logs and
counts whatever they raise, and the shopper's call goes on unchanged. Neither hook ever sees a
shopper whose token did not verify: such a call is proxied and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from starlette.datastructures import Headers

from gateway.identity import Visitor
from gateway.operations import Operation
from state.exposures import Exposure


@dataclass(slots=True)
class Call:
    operation: Operation
    method: str
    path: str  # raw path, exactly as received
    query: str  # raw query string, exactly as received (never rebuilt unless a decision rewrote it)
    headers: Headers  # the shopper's request headers
    client: str | None  # the shopper's IP address
    token: str | None  # the shopper's bearer token: memory only, never persisted, logged or emitted
    visitor: Visitor | None
    received_at: float  # epoch seconds
    body: bytes = b""  # request body; captured only when the tracker wants this call (bounded)
    shopper: str | None = None  # the verified shopper's ordering key (anon-{orderid}, user:{usr})
    client_id: str | None = None  # the verified token's API client (`cid`): the storefront
    request_id: str | None = None  # X-Request-Id of the storefront call (gateway.requestid)


@dataclass(frozen=True, slots=True)
class Decision:
    query: str  # the rewritten raw query string sent upstream
    header: str  # value of the X-Decision response header
    reorder: Callable[[bytes], bytes] | None = None  # rewrites the (decoded) 2xx response body
    extra: dict[str, str] = field(default_factory=dict)  # what the decider wants to remember
    exposures: tuple[Exposure, ...] = ()  # who saw which variant; recorded only on a 2xx


class Decider(Protocol):
    def applies(self, call: Call) -> bool:
        """Cheap, synchronous: could a live table rewrite this call? If not, the proxy skips
        resolving the shopper (no `GET /v1/me`) and forwards the call untouched."""

    async def decide(self, call: Call) -> Decision | None:
        """Return how to rewrite this GET list call, or None to forward it unchanged. Only called
        for a call whose token verified (`call.visitor` is set)."""


class Tracker(Protocol):
    def wants(self, call: Call) -> bool:
        """Cheap, synchronous: should this call's request and response bodies be captured?"""

    async def record(
        self, call: Call, status: int, body: bytes | None, exposures: Sequence[Exposure] = ()
    ) -> None:
        """Record the events of a 2xx call (`body` is None when `wants` said no) and the
        exposures of its decision, durably. Runs before the response's last byte is sent."""
