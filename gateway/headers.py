"""What the gateway reads from a shopper's request headers, written once for tracking and decisions.

Every value here comes from the client, so every rule is bounded: a User-Agent is cut to
`MAX_USER_AGENT` characters before any regular expression sees it, so a megabyte of header costs
no more than a normal one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from urllib.parse import parse_qsl, urlsplit

MAX_USER_AGENT = 512  # longer User-Agents are classified on their first 512 characters
# Where CDNs and hosts put the shopper's country (ISO 3166-1 alpha-2), tried in this order.
COUNTRY_HEADERS = ("cf-ipcountry", "x-country", "cloudfront-viewer-country", "x-vercel-ip-country")
_MAX_UTM = 10  # utm_* parameters kept from one request
_MAX_PARAM = 200  # characters kept of one utm_* value

_BOTS = re.compile(
    r"bot\b|bot/|crawl|spider|slurp|bingpreview|facebookexternalhit|headless|lighthouse"
    r"|pingdom|uptimerobot|python-requests|scrapy|curl/|wget/|go-http-client",
    re.IGNORECASE,
)
_TABLET = re.compile(r"ipad|tablet|kindle|silk|playbook", re.IGNORECASE)
_MOBILE = re.compile(r"mobi|iphone|ipod|android|windows phone", re.IGNORECASE)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def user_agent(headers: Mapping[str, str]) -> str:
    """The shopper's User-Agent, cut to a length every classifier can afford."""
    return (headers.get("user-agent") or "")[:MAX_USER_AGENT]


def is_bot(agent: str) -> bool:
    """A crawler, monitor or script rather than a shopper's browser (`agent` already capped)."""
    return bool(agent) and _BOTS.search(agent) is not None


def device_of(agent: str) -> str:
    """A coarse device class for targeting (`agent` already capped): bot, tablet, mobile, desktop."""
    if not agent or is_bot(agent):
        return "bot"
    lower = agent.lower()
    if _TABLET.search(agent) or ("android" in lower and "mobile" not in lower):
        return "tablet"
    if _MOBILE.search(agent):
        return "mobile"
    return "desktop"


def browser_id(headers: Mapping[str, str], client_key: str | None) -> str | None:
    """The storefront's own CDP browser id: `X-Browser-Id`, else the Engage cookie
    `bid_{clientKey}` (any `bid_…` cookie when no client key is configured); names are
    case-insensitive."""
    header = (headers.get("x-browser-id") or "").strip()
    if header:
        return header[:200]
    wanted = f"bid_{client_key}".lower() if client_key else None
    for part in (headers.get("cookie") or "").split(";"):
        name, _, value = part.strip().partition("=")
        name = name.lower()
        if value and (name == wanted or (wanted is None and name.startswith("bid_"))):
            return value.strip('"')[:200]
    return None


def country(headers: Mapping[str, str], names: Sequence[str] = COUNTRY_HEADERS) -> str | None:
    """The shopper's country code from the first of `names` present (lower-case header names)."""
    found = next((headers[name] for name in names if headers.get(name)), None)
    code = found.strip().upper()[:8] if found else ""
    return code or None


def utm_params(query: str, referer: str | None) -> dict[str, str]:
    """Campaign parameters (`utm_*`) of this request's query, else of the page that made it (the
    `Referer`'s query): an API call rarely carries them itself, the storefront page does."""
    for source in (query, urlsplit(referer).query if referer else ""):
        found: dict[str, str] = {}
        for key, value in parse_qsl(source, keep_blank_values=False):
            key = key.lower()
            if key.startswith("utm_") and len(key) <= 40 and len(found) < _MAX_UTM:
                found.setdefault(key, value[:_MAX_PARAM])
        if found:
            return found
    return {}
