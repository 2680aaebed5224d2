"""The CDP Batch API: allocate an upload location, upload the gzip file, follow its status.

Allocation and status calls use Basic auth (client key : API token). The upload goes to the
pre-signed location the allocation returned, so it carries no credentials of ours.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import httpx

IN_PROGRESS = frozenset({"uploading", "queued", "pending", "processing"})


class BatchError(Exception):
    """The Batch API refused or failed a call; the message says which."""


@dataclass(frozen=True, slots=True)
class BatchConfig:
    base_url: str
    client_key: str
    api_token: str
    timeout: float = 60.0


@dataclass(frozen=True, slots=True)
class Location:
    href: str
    expiry: str | None  # ISO 8601; the location stops accepting uploads after it


@dataclass(frozen=True, slots=True)
class BatchStatus:
    code: str
    log_url: str | None

    @property
    def finished(self) -> bool:
        return self.code not in IN_PROGRESS

    @property
    def succeeded(self) -> bool:
        return self.code == "success"


class BatchClient:
    def __init__(self, config: BatchConfig, client: httpx.Client) -> None:
        self.config = config
        self.client = client
        self._auth = httpx.BasicAuth(config.client_key, config.api_token)

    def _url(self, batch_id: str) -> str:
        return f"{self.config.base_url}/v2/batches/{batch_id}"

    def allocate(self, batch_id: str, checksum: str, size: int) -> Location:
        """Ask for an upload location for a file with this hex MD5 and size in bytes."""
        response = self.client.put(
            self._url(batch_id),
            json={"checksum": checksum, "size": size},
            auth=self._auth,
            timeout=self.config.timeout,
        )
        body = _json(response, "allocate")
        location = body.get("location") or {}
        if not location.get("href"):
            raise BatchError(f"allocate returned no location: {body}")
        return Location(str(location["href"]), location.get("expiry"))

    def upload(self, location: Location, data: bytes, checksum: str) -> None:
        """PUT the gzip file to the pre-signed location."""
        response = self.client.put(
            location.href,
            content=data,
            headers={
                "Content-Type": "application/gzip",
                "Content-Md5": base64.b64encode(bytes.fromhex(checksum)).decode(),
                "x-amz-server-side-encryption": "AES256",
            },
            timeout=self.config.timeout,
        )
        if response.status_code >= 300:
            raise BatchError(f"upload failed: {response.status_code} {response.text[:500]}")

    def status(self, batch_id: str) -> BatchStatus:
        body = _json(
            self.client.get(self._url(batch_id), auth=self._auth, timeout=self.config.timeout),
            "status",
        )
        status = body.get("status") or {}
        code = status.get("code") if isinstance(status, dict) else status
        log = (status.get("log") if isinstance(status, dict) else None) or body.get("log")
        return BatchStatus(str(code or "unknown"), str(log) if log else None)

    def error_log(self, status: BatchStatus) -> str:
        """The error log a failed batch points at (a pre-signed URL), as text."""
        if not status.log_url:
            return ""
        response = self.client.get(status.log_url, timeout=self.config.timeout)
        if response.status_code >= 300:
            raise BatchError(f"error log download failed: {response.status_code}")
        return response.text


def _json(response: httpx.Response, step: str) -> dict[str, Any]:
    if response.status_code >= 300:
        raise BatchError(f"{step} failed: {response.status_code} {response.text[:500]}")
    body = response.json()
    if not isinstance(body, dict):
        raise BatchError(f"{step} returned {body!r}")
    return body
