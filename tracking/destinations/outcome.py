"""How a destination's answer is classified: delivered, retry later, or dead on arrival."""

from __future__ import annotations

from email.utils import parsedate_to_datetime
from time import time

import httpx


class DeliveryError(Exception):
    """A failed delivery. `permanent` = dead-letter now; `retry_after` = seconds the server asked for."""

    def __init__(
        self, message: str, *, permanent: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


def check(response: httpx.Response) -> None:
    """Raise unless 2xx. 4xx other than 408/429 will never succeed, so it is permanent."""
    status = response.status_code
    if 200 <= status < 300:
        return
    retry_after = _retry_after(response.headers.get("retry-after"))
    permanent = 400 <= status < 500 and status not in (408, 429)
    raise DeliveryError(f"HTTP {status}", permanent=permanent, retry_after=retry_after)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time())
    except (TypeError, ValueError):
        return None
