"""Typed errors for everything that can go wrong between the portal and Coasty.

Every failure the client reports is a `CoastyError` carrying Coasty's error envelope
(`{"error": {code, message, type, request_id, retryable, retry_with_same_idempotency_key}}`)
plus the HTTP status and `Retry-After`. Callers branch on the class, never on strings:

- `CoastyTransportError`: the request never got a response (DNS, refused, reset, timeout).
- `CoastyBadResponse`: a response came back but is not what Coasty sends: an HTML 502 from a
  proxy, an empty body, the wrong content type, truncated JSON, JSON without the expected shape.
  Always retryable: such responses come from the path to Coasty, not from Coasty's judgement.
- one class per documented status/code (see `error_from_response`).

This module only classifies. Whether to retry is decided in one place: `runs.coasty.retry`.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from . import strict_json

__all__ = [
    "CoastyAuthError",
    "CoastyBadResponse",
    "CoastyError",
    "CoastyIdempotencyInFlight",
    "CoastyIdempotencyKeyReused",
    "CoastyInsufficientCredits",
    "CoastyInvalidState",
    "CoastyNotFound",
    "CoastyRateLimited",
    "CoastyServerError",
    "CoastyTransportError",
    "CoastyValidationError",
    "bad_response",
    "error_from_response",
    "parse_json_object",
    "parse_retry_after",
    "redact",
    "snippet_of",
    "transport_error",
]

logger = logging.getLogger("runs.coasty")

# How much of an odd body we keep for the error message and the logs.
SNIPPET_CHARS = 200


class CoastyError(Exception):
    """A failed call to Coasty, with the fields of Coasty's error envelope."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        type: str | None = None,
        request_id: str | None = None,
        retryable: bool = False,
        retry_with_same_idempotency_key: bool = False,
        retry_after: float | None = None,
        envelope: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.type = type
        self.request_id = request_id
        self.retryable = retryable
        self.retry_with_same_idempotency_key = retry_with_same_idempotency_key
        self.retry_after = retry_after
        # The raw `error` object as Coasty sent it (None when there was no envelope), so
        # optional fields such as `suggestion`, `docs_url` or `details` stay reachable.
        self.envelope: Mapping[str, Any] | None = envelope
        # How many attempts the retry loop made before giving up with this error.
        self.attempts = 1

    def __str__(self) -> str:
        head = " ".join(str(part) for part in (self.status, self.code) if part is not None)
        text = f"{head}: {self.message}" if head else self.message
        extras = []
        if self.request_id:
            extras.append(f"request_id={self.request_id}")
        extras.append(f"retryable={'yes' if self.retryable else 'no'}")
        if self.retry_after is not None:
            extras.append(f"retry_after={self.retry_after:g}s")
        return f"{text} ({', '.join(extras)})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructors do not survive the default Exception pickling, and task
        # queues pickle what a task raised.
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))


def _rebuild(cls: type[CoastyError], message: str, state: dict[str, Any]) -> CoastyError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class CoastyTransportError(CoastyError):
    """No response: connection refused or reset, DNS failure, or a timeout. Retryable."""


class CoastyBadResponse(CoastyError):
    """A response that is not a Coasty response (proxy HTML, empty, truncated, wrong shape)."""

    def __init__(self, message: str, *, snippet: str = "", **fields: Any) -> None:
        fields.setdefault("retryable", True)
        super().__init__(message, **fields)
        self.snippet = snippet

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text}; body starts {self.snippet!r}" if self.snippet else text


class CoastyAuthError(CoastyError):
    """401 (key invalid or revoked) or 403 (key lacks the scope)."""


class CoastyNotFound(CoastyError):
    """404: unknown, expired, or in the other (test/live) namespace."""


class CoastyValidationError(CoastyError):
    """400, 413 or 422 (other than IDEMPOTENCY_KEY_REUSED): the request itself is wrong."""


class CoastyInsufficientCredits(CoastyError):
    """402: Coasty's own wallet for this API key cannot pay for a step."""


class CoastyInvalidState(CoastyError):
    """409 INVALID_STATE (or another 409 conflict): e.g. resuming a run that is not paused."""


class CoastyIdempotencyInFlight(CoastyError):
    """409 IDEMPOTENCY_IN_FLIGHT: the first request with this key is still running."""


class CoastyIdempotencyKeyReused(CoastyError):
    """422 IDEMPOTENCY_KEY_REUSED: this key was used with a different body."""


class CoastyRateLimited(CoastyError):
    """429: rate or concurrency limit; wait `retry_after` seconds."""


class CoastyServerError(CoastyError):
    """5xx with Coasty's envelope."""


_BY_CODE: dict[str, type[CoastyError]] = {
    "IDEMPOTENCY_IN_FLIGHT": CoastyIdempotencyInFlight,
    "IDEMPOTENCY_KEY_REUSED": CoastyIdempotencyKeyReused,
    "INVALID_STATE": CoastyInvalidState,
}

_BY_STATUS: dict[int, type[CoastyError]] = {
    400: CoastyValidationError,
    401: CoastyAuthError,
    402: CoastyInsufficientCredits,
    403: CoastyAuthError,
    404: CoastyNotFound,
    409: CoastyInvalidState,
    413: CoastyValidationError,
    422: CoastyValidationError,
    429: CoastyRateLimited,
}


def _class_for(status: int, code: str) -> type[CoastyError]:
    by_code = _BY_CODE.get(code)
    # A code only refines the status it is documented with; a 5xx that says INVALID_STATE is
    # still a server error.
    if by_code is not None and status in (409, 422):
        return by_code
    if status >= 500:
        return CoastyServerError
    return _BY_STATUS.get(status, CoastyError)


def _default_retryable(status: int, code: str) -> bool:
    return status >= 500 or status == 429 or code == "IDEMPOTENCY_IN_FLIGHT"


# Secrets that may sit in a body we quote: the webhook secret of a (truncated) create
# response, or an API key echoed by something in between.
_SECRET_PATTERNS = (
    re.compile(r'("webhook_secret"\s*:\s*")[^"]*'),
    re.compile(r"whsec_[A-Za-z0-9_\-]+"),
    re.compile(r"sk-coasty-[A-Za-z0-9_\-]+"),
)


def redact(text: str) -> str:
    """`text` with webhook secrets and API keys replaced by `[redacted]`."""
    text = _SECRET_PATTERNS[0].sub(r"\1[redacted]", text)
    for pattern in _SECRET_PATTERNS[1:]:
        text = pattern.sub("[redacted]", text)
    return text


def snippet_of(content: bytes) -> str:
    text = content[: SNIPPET_CHARS * 4].decode("utf-8", errors="replace")
    text = redact(text)
    return text[:SNIPPET_CHARS] + ("…" if len(text) > SNIPPET_CHARS else "")


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a `Retry-After` header: delta-seconds or an HTTP date (RFC 9110)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _is_json(response: httpx.Response) -> bool:
    media = str(response.headers.get("content-type", "")).partition(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def bad_response(
    response: httpx.Response, reason: str, *, content: bytes | None = None
) -> CoastyBadResponse:
    """A `CoastyBadResponse` describing `response`, which must have been read unless the
    (start of the) body is passed as `content`."""
    content_type = response.headers.get("content-type") or "no content type"
    return CoastyBadResponse(
        f"unexpected response from Coasty: {reason} (HTTP {response.status_code}, {content_type})",
        status=response.status_code,
        code="BAD_RESPONSE",
        request_id=response.headers.get("x-coasty-request-id"),
        retry_after=parse_retry_after(response.headers.get("retry-after")),
        snippet=snippet_of(response.content if content is None else content),
    )


def parse_json_object(response: httpx.Response) -> dict[str, Any] | CoastyBadResponse:
    """The response's JSON object, or the `CoastyBadResponse` saying why there is none."""
    if not response.content:
        return bad_response(response, "empty body")
    if not _is_json(response):
        return bad_response(response, "not JSON")
    try:
        decoded = strict_json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return bad_response(response, "malformed or truncated JSON")
    parsed: dict[str, Any] = decoded.value
    if not isinstance(parsed, dict):
        return bad_response(response, f"JSON {type(parsed).__name__}, expected an object")
    if decoded.refused:
        # Stored nowhere as sent: the values became null (or were clamped), and the record of
        # it travels in the object under "_portal" and in the log.
        logger.warning(
            "Coasty answered %s with values the portal refused: %s",
            _request_line(response),
            "; ".join(decoded.refused[:10]),
        )
        parsed = strict_json.annotate(parsed, decoded.refused)
    return parsed


def _request_line(response: httpx.Response) -> str:
    try:
        return f"{response.request.method} {response.request.url.path}"
    except RuntimeError:  # a response built by hand (a stored idempotent answer)
        return "a request"


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def error_from_response(response: httpx.Response) -> CoastyError:
    """The typed error for a non-2xx `response` (already read).

    A body that is not Coasty's envelope becomes `CoastyBadResponse` with the status and a
    snippet: a gateway's HTML page says nothing about what Coasty decided.
    """
    status = response.status_code
    parsed = parse_json_object(response)
    if isinstance(parsed, CoastyBadResponse):
        return parsed
    envelope = parsed.get("error")
    if not isinstance(envelope, dict) or not isinstance(envelope.get("code"), str):
        return bad_response(response, "JSON without Coasty's error envelope")
    code: str = envelope["code"]
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if retry_after is None:
        body_retry = envelope.get("retry_after")
        if isinstance(body_retry, int | float) and not isinstance(body_retry, bool):
            retry_after = max(0.0, float(body_retry))
    retryable = envelope.get("retryable")
    same_key = envelope.get("retry_with_same_idempotency_key")
    cls = _class_for(status, code)
    return cls(
        _opt_str(envelope.get("message")) or f"Coasty answered {status} {code}",
        status=status,
        code=code,
        type=_opt_str(envelope.get("type")),
        request_id=_opt_str(envelope.get("request_id"))
        or response.headers.get("x-coasty-request-id"),
        retryable=retryable if isinstance(retryable, bool) else _default_retryable(status, code),
        retry_with_same_idempotency_key=same_key if isinstance(same_key, bool) else False,
        retry_after=retry_after,
        envelope=envelope,
    )


def transport_error(
    exc: httpx.TransportError, *, method: str, path: str, keyed: bool = False
) -> CoastyTransportError:
    """A `CoastyTransportError` for an httpx failure, naming what was being done. Only a
    request that carried an Idempotency-Key may be retried with that key."""
    if isinstance(exc, httpx.TimeoutException):
        code = "TIMEOUT"
    elif isinstance(exc, httpx.ConnectError):
        code = "CONNECT_ERROR"
    else:
        code = "TRANSPORT_ERROR"
    detail = str(exc) or type(exc).__name__
    return CoastyTransportError(
        f"{method} {path} failed in transit: {type(exc).__name__}: {detail}",
        code=code,
        retryable=True,
        retry_with_same_idempotency_key=keyed,
    )
