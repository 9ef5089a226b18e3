"""Coasty's error envelope, as the simulator answers it.

Every error the simulator returns is ``{"error": {code, message, type, request_id, retryable,
retry_with_same_idempotency_key, retry_after?, details?}}`` (ApiError in the reference OpenAPI).

``type`` must be one of the ApiError enum values. The problem catalogue calls 409s
``conflict_error``, but that value is not in the schema's enum, so 409s use ``state_error``:
the schema is what clients validate against.
"""

from __future__ import annotations

from typing import Any

# (status, type, retryable) for each code the simulator can return.
CODES: dict[str, tuple[int, str, bool]] = {
    "INVALID_JSON": (400, "validation_error", False),
    "VALIDATION_ERROR": (422, "validation_error", False),  # 400 when a parameter is wrong
    "INVALID_API_KEY": (401, "auth_error", False),
    "NOT_FOUND": (404, "not_found_error", False),
    "METHOD_NOT_ALLOWED": (405, "client_error", False),
    "INVALID_STATE": (409, "state_error", False),
    "IDEMPOTENCY_IN_FLIGHT": (409, "state_error", True),
    "PAYLOAD_TOO_LARGE": (413, "validation_error", False),
    "IDEMPOTENCY_KEY_REUSED": (422, "validation_error", False),
    "LLM_PROVIDER_UNSUPPORTED": (422, "validation_error", False),
    "RATE_LIMITED": (429, "rate_limit_error", True),
    "INTERNAL_ERROR": (500, "server_error", True),
    "UPSTREAM_ERROR": (502, "server_error", True),
    "SERVICE_UNAVAILABLE": (503, "server_error", True),
    "UPSTREAM_TIMEOUT": (504, "server_error", True),
}


class ApiError(Exception):
    """An error answer. Raised anywhere in a handler; the app turns it into the envelope."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        retry_with_same_idempotency_key: bool = False,
        retry_after: int | None = None,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        default_status, self.type, self.retryable = CODES[code]
        self.code = code
        self.message = message
        self.status = status or default_status
        self.retry_with_same_idempotency_key = retry_with_same_idempotency_key
        self.retry_after = retry_after
        self.details = details
        self.headers = dict(headers or {})

    def body(self, request_id: str) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "type": self.type,
            "request_id": request_id,
            "retryable": self.retryable,
            "retry_with_same_idempotency_key": self.retry_with_same_idempotency_key,
        }
        if self.retry_after is not None:
            error["retry_after"] = self.retry_after
        if self.details:
            error["details"] = self.details
        return {"error": error}

    def response_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return headers
