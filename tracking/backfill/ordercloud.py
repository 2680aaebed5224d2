"""Reading submitted orders from OrderCloud with an admin API client (client credentials).

Orders come page by page in DateSubmitted order (ties broken by ID) inside a fixed window, so
page N names the same orders on a rerun and a resumed run can start at the page after the last
one it finished.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx


class OrderCloudError(Exception):
    """OrderCloud refused or failed a call; the message says which."""


@dataclass(frozen=True, slots=True)
class OrderCloudConfig:
    base_url: str
    client_id: str
    client_secret: str
    page_size: int = 100
    timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class OrderPage:
    orders: list[dict[str, Any]]
    page: int
    total_pages: int
    total_count: int


class OrderSource:
    """Submitted orders and their line items, read with one admin token (renewed on expiry)."""

    def __init__(self, config: OrderCloudConfig, client: httpx.Client) -> None:
        self.config = config
        self.client = client
        self._token: str | None = None
        self._expires = 0.0

    def _bearer(self) -> dict[str, str]:
        if self._token is None or time.monotonic() > self._expires:
            response = self.client.post(
                self.config.base_url + "/oauth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": self.config.client_id,
                    "client_secret": self.config.client_secret,
                },
                timeout=self.config.timeout,
            )
            if response.status_code != 200:
                raise OrderCloudError(
                    f"token request failed: {response.status_code} {response.text}"
                )
            body = response.json()
            self._token = str(body["access_token"])
            self._expires = time.monotonic() + float(body.get("expires_in") or 600) - 60
        return {"Authorization": f"Bearer {self._token}"}

    def _get(self, path: str, params: list[tuple[str, str | int]]) -> dict[str, Any]:
        response = self.client.get(
            self.config.base_url + path,
            params=params,
            headers=self._bearer(),
            timeout=self.config.timeout,
        )
        if response.status_code != 200:
            raise OrderCloudError(f"GET {path} failed: {response.status_code} {response.text}")
        return response.json()

    def orders(self, since: str, until: str, page: int) -> OrderPage:
        """One page of orders submitted in [since, until), oldest first."""
        body = self._get(
            "/v1/orders/Incoming",
            [
                ("DateSubmitted", f">={since}"),
                ("DateSubmitted", f"<{until}"),
                ("IsSubmitted", "true"),
                ("sortBy", "DateSubmitted,ID"),
                ("page", page),
                ("pageSize", self.config.page_size),
            ],
        )
        meta = body.get("Meta") or {}
        return OrderPage(
            orders=list(body.get("Items") or []),
            page=page,
            total_pages=int(meta.get("TotalPages") or 0),
            total_count=int(meta.get("TotalCount") or 0),
        )

    def lines(self, order_id: str) -> list[dict[str, Any]]:
        """Every line item of one order (all pages)."""
        lines: list[dict[str, Any]] = []
        page = 1
        while True:
            body = self._get(
                f"/v1/orders/Incoming/{quote(order_id, safe='')}/lineitems",
                [("page", page), ("pageSize", 100)],
            )
            lines.extend(body.get("Items") or [])
            if page >= int((body.get("Meta") or {}).get("TotalPages") or 0):
                return lines
            page += 1
