"""Log formats: plain lines for a terminal, one JSON object per line for a log pipeline.

Both carry the request id of the call a line was written for (from `gateway.requestid`), so an
operator can follow one storefront call through the proxy, the hooks and the upstream. Fields
passed with `extra=` (the access log's method, path, status, duration) become JSON keys; nothing
else of the record is emitted, so a credential can only reach a log if code puts it in a message.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway import requestid

# What every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}


class PlainFormatter(logging.Formatter):
    """`time level logger message`, then `request_id=…` when the line belongs to a call."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = requestid.current.get()
        return f"{line} request_id={rid}" if rid else line


class JsonFormatter(logging.Formatter):
    """time (ISO 8601 UTC, ms), level, logger, message, request_id, `extra=` fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = requestid.current.get()
        if rid:
            out["request_id"] = rid
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()
