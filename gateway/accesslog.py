"""Access log lines with secrets removed: tokens never reach a log."""

from __future__ import annotations

import logging
import re

log = logging.getLogger("ocgateway.access")

# Query keys whose values are credentials. OrderCloud puts a JWT in `anonUserToken`.
_SECRET_QUERY = re.compile(
    r"((?:^|&)(?:anonUserToken|access_token|refresh_token|token|password|client_secret)=)[^&]*",
    re.IGNORECASE,
)


def redact_query(query: str) -> str:
    """The query string with credential values replaced by `REDACTED`."""
    return _SECRET_QUERY.sub(r"\1REDACTED", query) if query else query


def target(path: str, query: str) -> str:
    return f"{path}?{redact_query(query)}" if query else path


def log_request(method: str, path: str, query: str, status: int, elapsed_ms: float) -> None:
    if log.isEnabledFor(logging.INFO):
        url = target(path, query)
        fields = {"method": method, "path": url, "status": status, "duration_ms": elapsed_ms}
        log.info("%s %s %d %.1fms", method, url, status, elapsed_ms, extra=fields)
