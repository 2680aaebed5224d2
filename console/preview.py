"""Preview as a shopper: turn a saved test shopper (or a known visitor) into what `explain`
needs, and fetch the list the rewritten call returns through the configured upstream.

The list is fetched with the preview shopper's own OrderCloud credentials (a password grant from
configuration), so it shows what OrderCloud lets a real shopper see, in the order the gateway
would give it (pins first).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from console.config import PreviewConfig
from decisions.rewrite import reorder_for
from state.profiles import Profile
from state.shoppers import SavedShopper

# A User-Agent that gateway.headers classifies as each device.
USER_AGENTS = {
    "desktop": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36",
    "mobile": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) Mobile/15E148 Safari/604.1",
    "tablet": "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Safari/604.1",
    "bot": "Googlebot/2.1 (+http://www.google.com/bot.html)",
}


def moment(day: str | None, hour: int | None) -> float:
    """Epoch seconds for the preview: a day (YYYY-MM-DD, default today, UTC) at an hour."""
    now = datetime.now(UTC)
    when = datetime.fromisoformat(day).replace(tzinfo=UTC) if day else now
    if hour is not None:
        when = when.replace(hour=hour, minute=0, second=0, microsecond=0)
    elif day:
        when = when.replace(hour=now.hour, minute=now.minute)
    return when.timestamp()


def shopper_profile(shopper: SavedShopper, now: float) -> Profile:
    """The stored profile a real visitor with these facts would have."""
    return Profile(
        visitor_id=f"test-{shopper.name}",
        anonymous=shopper.anonymous,
        buyer_id=shopper.buyer,
        orders=shopper.orders,
        spent=shopper.spent,
        viewed_categories=list(shopper.viewed_categories),
        cart_products=list(shopper.cart_products),
        first_seen=now,
        last_seen=now,
        language=shopper.language,
    )


def shopper_headers(shopper: SavedShopper) -> dict[str, str]:
    headers = {"user-agent": USER_AGENTS.get(shopper.device, USER_AGENTS["desktop"])}
    if shopper.country:
        headers["cf-ipcountry"] = shopper.country
    return headers


class Storefront:
    """The preview shopper's session with the upstream; the token is reused until it expires."""

    def __init__(self, config: PreviewConfig, http: httpx.AsyncClient) -> None:
        self.config = config
        self.http = http
        self._token: tuple[str, float] | None = None

    async def _bearer(self) -> str:
        if self._token and self._token[1] > time.monotonic():
            return self._token[0]
        answer = await self.http.post(
            f"{self.config.upstream}/oauth/token",
            data={
                "grant_type": "password",
                "client_id": self.config.client_id,
                "username": self.config.username,
                "password": self.config.password,
                "scope": "Shopper",
            },
        )
        answer.raise_for_status()
        body = answer.json()
        lifetime = float(body.get("expires_in") or 600)
        self._token = (body["access_token"], time.monotonic() + max(30.0, lifetime - 60))
        return self._token[0]

    async def list(self, route: str, query: str, pin: list[str]) -> list[dict[str, Any]]:
        """`Items` of GET /v1/{route}?{query}, re-ordered by the pin as the gateway would."""
        url = f"{self.config.upstream}/v1/{route}" + (f"?{query}" if query else "")
        answer = await self.http.get(
            url, headers={"Authorization": f"Bearer {await self._bearer()}"}
        )
        answer.raise_for_status()
        body = reorder_for(pin)(answer.content) if pin else answer.content
        items = orjson.loads(body).get("Items") or []
        return [_item(item) for item in items if isinstance(item, dict)]

    async def names(self, ids: list[str]) -> dict[str, str]:
        """Product ID -> name for the IDs this shopper can see (pins shown with their names)."""
        if not ids:
            return {}
        query = "ID=" + "%7C".join(ids) + f"&pageSize={min(100, len(ids))}"
        return {item["id"]: item["name"] for item in await self.list("me/products", query, [])}


def _item(item: dict[str, Any]) -> dict[str, Any]:
    xp = item.get("xp") if isinstance(item.get("xp"), dict) else {}
    images = xp.get("Images") if isinstance(xp.get("Images"), list) else []
    image = next((i.get("url") or i.get("Url") for i in images if isinstance(i, dict)), None)
    return {
        "id": str(item.get("ID") or ""),
        "name": str(item.get("Name") or item.get("ID") or ""),
        "image": image
        if isinstance(image, str) and image.startswith(("https://", "http://", "/"))
        else None,
        "description": str(item.get("Description") or "")[:160],
    }
