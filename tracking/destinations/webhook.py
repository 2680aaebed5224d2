"""A signed JSON webhook in the spirit of OrderCloud Tracking Events.

Wire format (one event per POST):
    POST {OCGW_WEBHOOK_URL}
    Content-Type: application/json
    X-OCGW-Event-Id: <event id>            stable across retries: de-duplicate on it
    X-OCGW-Event-Type: sitecore.backbone.messages.orders.submitted
    X-OCGW-Signature: sha256=<hex HMAC-SHA256(OCGW_WEBHOOK_SECRET, raw body)>   (when a secret is set)
    {"id", "type", "time", "visitor", "anonymous", "previous_visitor", "browser_id",
     "context": {"ip", "user_agent", ...}, "payload": {order, lineitems, products, user, ...}}
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from typing import Any

import httpx

from state.events import ALL_TYPES, Event
from tracking.destinations.outcome import check

PREFIX = "sitecore.backbone.messages."
SIGNATURE_HEADER = "X-OCGW-Signature"
EVENT_ID_HEADER = "X-OCGW-Event-Id"


def envelope(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "type": PREFIX + event.type,
        "time": event.time,
        "visitor": event.visitor,
        "anonymous": event.anonymous,
        "previous_visitor": event.previous_visitor,
        "browser_id": event.browser_id,
        "context": event.context,
        "payload": event.data,
    }


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """What a receiver does: recompute over the raw body, compare in constant time."""
    return hmac.compare_digest(sign(secret, body), header)


def request(event: Event, secret: str | None) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(envelope(event), separators=(",", ":"), default=str).encode()
    headers = {
        "Content-Type": "application/json",
        EVENT_ID_HEADER: event.id,
        "X-OCGW-Event-Type": PREFIX + event.type,
    }
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, body)
    return body, headers


class WebhookDestination:
    name = "webhook"
    accepts = ALL_TYPES
    max_batch = 1

    def __init__(self, client: httpx.AsyncClient, url: str, secret: str | None) -> None:
        self.client = client
        self.url = url
        self.secret = secret

    async def send(self, events: Sequence[Event]) -> None:
        for event in events:
            body, headers = request(event, self.secret)
            check(await self.client.post(self.url, content=body, headers=headers))
