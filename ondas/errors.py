"""The one error hierarchy of the platform and its HTTP mapping.

Stores translate driver errors into these; handlers raise them; every Flask app renders them as
``{"error": <kind>, "message": <what to fix>, "details": {...}}`` with the status below.
"""

from __future__ import annotations

from typing import Any


class OndasError(Exception):
    status = 500
    kind = "internal"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.kind, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class Invalid(OndasError, ValueError):
    """Bad input. Also a ValueError, so validators (pydantic, parsers) can raise it directly."""

    status = 400
    kind = "invalid"


class Unauthenticated(OndasError):
    status = 401
    kind = "unauthenticated"


class Forbidden(OndasError):
    status = 403
    kind = "forbidden"


class NotFound(OndasError):
    status = 404
    kind = "not_found"


class Conflict(OndasError):
    status = 409
    kind = "conflict"


class PayloadTooLarge(OndasError):
    status = 413
    kind = "payload_too_large"


class Unavailable(OndasError):
    status = 503
    kind = "unavailable"
