"""The destinations file (`OCGW_DESTINATIONS`): which Sitecore tenants each storefront feeds.

OrderCloud configures tracking per API client (a TrackingEvents row names an event type and a
client ID); so does the gateway. The file maps a token's `cid` to that storefront's own CDP client
key, point of sale, channel and Personalize flow, Send site, Discover key, webhook, and the event
types it wants. `default` covers every client the file does not name. Without a file, the `OCGW_*`
variables form the `default` entry (the single-storefront shorthand).

```yaml
storefronts:
  default:
    cdp: { url: https://api-engage-eu.sitecorecloud.io, client_key: ck-a, pos: shop-a.com }
  0c4a7c2e-5b1d-4e0f-9a3e-0cafe0000002:
    cdp: { url: https://api-engage-eu.sitecorecloud.io, client_key: ck-b, pos: shop-b.com,
           personalize_flow: segments_b }
    send: { url: https://t.stat-track.com, site_id: 2f6c7a4e-3d2b-4c1a-9e8f-0a1b2c3d4e5f }
    events: [UserLoggedIn, LineItemAdded, OrderSubmitted, orders.lines.removed]
```

Parsing reuses the tables loader (same size, depth and alias limits, same file watcher); an error
names the file line, the entry and the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, ValidationError, field_validator

from decisions.errors import ValidationFailed
from decisions.loader import parse_text
from state import events as ev

DEFAULT = "default"
# OrderCloud's TrackingEvents names, accepted beside the gateway's own event types.
ORDERCLOUD_TYPES = {
    "UserLoggedIn": ev.IDENTIFIED,
    "LineItemAdded": ev.LINE_ADDED,
    "LineItemUpdated": ev.LINE_UPDATED,
    "OrderSubmitted": ev.ORDER_SUBMITTED,
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CdpEntry(_Strict):
    url: AnyHttpUrl
    client_key: str
    pos: str | None = None  # the upstream's host name when unset
    channel: str = "WEB"
    order_mode: Literal["multi", "single"] = "multi"
    personalize_flow: str | None = None


class SendEntry(_Strict):
    url: AnyHttpUrl
    site_id: str


class DiscoverEntry(_Strict):
    url: AnyHttpUrl
    api_key: str | None = None


class WebhookEntry(_Strict):
    url: AnyHttpUrl
    secret: str | None = None


class Storefront(_Strict):
    """One API client's destinations; `events` None means every event type."""

    cdp: CdpEntry | None = None
    send: SendEntry | None = None
    discover: DiscoverEntry | None = None
    webhook: WebhookEntry | None = None
    events: frozenset[str] | None = None

    @field_validator("events", mode="before")
    @classmethod
    def _events(cls, value: object) -> object:
        if not isinstance(value, list):
            return value
        unknown = [v for v in value if ORDERCLOUD_TYPES.get(v, v) not in ev.ALL_TYPES]
        if unknown:
            known = sorted(ev.ALL_TYPES | set(ORDERCLOUD_TYPES))
            raise ValueError(f"unknown event type {unknown[0]!r} (one of: {', '.join(known)})")
        return frozenset(ORDERCLOUD_TYPES.get(v, v) for v in value)


@dataclass(frozen=True, slots=True)
class DestinationsError:
    """One problem in the destinations file, located by line, entry and field."""

    message: str
    file: str | None = None
    line: int | None = None
    entry: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = f"{self.file or '<document>'}:{self.line}" if self.line else (self.file or "")
        named = ", ".join(
            p for p in (f"entry {self.entry}" if self.entry else "", self.field or "") if p
        )
        return ": ".join(p for p in (where, named, self.message) if p)


class InvalidDestinations(Exception):
    """A destinations file that must not be used; the last good one stays in force."""

    def __init__(self, errors: list[DestinationsError]) -> None:
        super().__init__("; ".join(str(e) for e in errors[:5]))
        self.errors = errors


Storefronts = Mapping[str | None, Storefront]  # client id (None: the default entry) -> storefront


def parse_destinations(text: str, name: str | None = None) -> dict[str | None, Storefront]:
    """Validate a destinations document; raise InvalidDestinations naming every problem."""
    try:
        parsed = parse_text(text, name)
    except ValidationFailed as exc:
        raise InvalidDestinations(
            [DestinationsError(e.message, e.file, e.line) for e in exc.errors]
        ) from None
    data = parsed.data
    errors: list[DestinationsError] = []
    for key in data:
        if key != "storefronts":
            line = parsed.locate((key,))[1]
            errors.append(DestinationsError(f"unknown section {key!r}", name, line))
    entries = data.get("storefronts")
    if not isinstance(entries, dict) or not entries:
        line = parsed.locate(("storefronts",))[1]
        errors.append(DestinationsError("storefronts must map client ids to entries", name, line))
        raise InvalidDestinations(errors)
    found: dict[str | None, Storefront] = {}
    for client, entry in entries.items():
        client_id = str(client)
        try:
            found[None if client_id == DEFAULT else client_id] = Storefront.model_validate(
                entry or {}
            )
        except ValidationError as exc:
            for error in exc.errors():
                path = [p for p in error["loc"] if not isinstance(p, str) or "[" not in p]
                line = parsed.locate(("storefronts", client, *path))[1]
                field = ".".join(str(p) for p in path) or None
                message = error["msg"].removeprefix("Value error, ")
                errors.append(DestinationsError(message, name, line, client_id, field))
    if errors:
        raise InvalidDestinations(errors)
    return found


def read_destinations(path: Path) -> dict[str | None, Storefront]:
    """Read and validate the destinations file (a bad file raises InvalidDestinations)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidDestinations([DestinationsError(f"cannot read: {exc}", str(path))]) from None
    return parse_destinations(text, str(path))


def destination_name(kind: str, client: str | None) -> str:
    """The outbox name of a storefront's destination: unique per client (`cdp@{client id}`); the
    default entry keeps the plain names, so a single-storefront outbox carries on unchanged."""
    return kind if client is None else f"{kind}@{client}"
