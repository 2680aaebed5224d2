"""OrderCloud-shaped errors.

Handlers raise `ApiError`; the app turns it into `{"Errors":[...]}` (plus the OAuth fields on the
token endpoint), so every failure reads to the official SDK exactly like one from OrderCloud.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error response: HTTP status, OrderCloud ErrorCode, message and Data.

    `oauth` is the OAuth `error` value (`invalid_grant`...) and is set only by the token endpoint,
    whose body carries `error`/`error_description` beside `Errors`.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        data: Any = None,
        oauth: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.data = data
        self.oauth = oauth

    def body(self) -> dict[str, Any]:
        errors = [{"ErrorCode": self.code, "Message": self.message, "Data": self.data}]
        if self.oauth is None:
            return {"Errors": errors}
        return {"error": self.oauth, "error_description": self.message, "Errors": errors}


def not_found(object_type: str, object_id: str | None) -> ApiError:
    """404 NotFound with the Data the SDK dereferences (a null Data makes it throw a TypeError)."""
    return ApiError(
        404,
        "NotFound",
        f"{object_type} not found: {object_id}",
        {"ObjectType": object_type, "ObjectID": object_id},
    )


def invalid(message: str, code: str = "ValidationFailure", data: Any = None) -> ApiError:
    """400 for a request OrderCloud would refuse as malformed."""
    return ApiError(400, code, message, data)
