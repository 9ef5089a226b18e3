"""One error envelope for everything under /api/: `{"error": {"code", "message", "fields"?}}`.

DRF's exceptions, Django's Http404 and PermissionDenied, the services' refusals (raised as the
ApiError subclasses below by the views) and anything unexpected all leave the API in this shape.
Unexpected errors answer 500 INTERNAL_ERROR with a request id that is also in the log, and never
a traceback. URLs under /api/ that match no endpoint answer 404 NOT_FOUND (api_not_found), and
errors raised outside a DRF view (middleware) are turned into the envelope by server_error.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.template import loader
from django.views.decorators.csrf import csrf_exempt
from django.views.defaults import bad_request as django_bad_request
from django.views.defaults import server_error as django_server_error
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

logger = logging.getLogger("portal.api")

API_PREFIX = "/api/"


class ApiError(exceptions.APIException):
    """A refusal the API states with its own code; subclasses fix the status and the code."""

    status_code: int = status.HTTP_400_BAD_REQUEST
    error_code = "VALIDATION_ERROR"

    def __init__(self, message: str, *, fields: dict | None = None, retry_after: int | None = None):
        super().__init__(message)
        self.fields = fields
        self.retry_after = retry_after


class InsufficientFundsError(ApiError):
    status_code = status.HTTP_402_PAYMENT_REQUIRED
    error_code = "INSUFFICIENT_FUNDS"


class BudgetExceededError(ApiError):
    status_code = status.HTTP_402_PAYMENT_REQUIRED
    error_code = "BUDGET_EXCEEDED"


class MemberLimitExceededError(ApiError):
    status_code = status.HTTP_402_PAYMENT_REQUIRED
    error_code = "MEMBER_LIMIT_EXCEEDED"


class InvalidStateError(ApiError):
    status_code = status.HTTP_409_CONFLICT
    error_code = "INVALID_STATE"


class IdempotencyKeyReusedError(ApiError):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    error_code = "IDEMPOTENCY_KEY_REUSED"


class IdempotencyInFlightError(ApiError):
    status_code = status.HTTP_409_CONFLICT
    error_code = "IDEMPOTENCY_IN_FLIGHT"


class PayloadTooLargeError(ApiError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    error_code = "PAYLOAD_TOO_LARGE"


def payload_too_large_message() -> str:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return f"The request body is larger than the API accepts ({limit // 1024} KB)."


# DRF's own exceptions, by class, and the code each answers with. Checked in order.
DRF_CODES: list[tuple[type[exceptions.APIException], str]] = [
    (exceptions.ValidationError, "VALIDATION_ERROR"),
    (exceptions.ParseError, "VALIDATION_ERROR"),
    (exceptions.NotAuthenticated, "UNAUTHENTICATED"),
    (exceptions.AuthenticationFailed, "UNAUTHENTICATED"),
    (exceptions.PermissionDenied, "PERMISSION_DENIED"),
    (exceptions.NotFound, "NOT_FOUND"),
    (exceptions.MethodNotAllowed, "METHOD_NOT_ALLOWED"),
    (exceptions.NotAcceptable, "NOT_ACCEPTABLE"),
    (exceptions.UnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE"),
    (exceptions.Throttled, "THROTTLED"),
]


def envelope(code: str, message: str, *, fields: dict | None = None, **extra) -> dict:
    error: dict = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    error.update(extra)
    return {"error": error}


def api_exception_handler(exc: Exception, context: dict) -> Response:
    """DRF's EXCEPTION_HANDLER: every exception a view raises, as the envelope."""
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLargeError(payload_too_large_message())
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(_message(exc, "Not found."))
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(_message(exc, "You may not do that."))
    if not isinstance(exc, exceptions.APIException):
        request = context.get("request")
        return _internal_error(exc, request)

    headers = {}
    auth_header = getattr(exc, "auth_header", None)
    if auth_header:
        headers["WWW-Authenticate"] = auth_header
    wait = getattr(exc, "wait", None) or getattr(exc, "retry_after", None)
    if wait:
        headers["Retry-After"] = str(max(1, int(-(-wait // 1))))  # whole seconds, rounded up

    if isinstance(exc, ApiError):
        body = envelope(exc.error_code, str(exc.detail), fields=exc.fields)
    elif isinstance(exc, exceptions.ValidationError):
        fields = flatten_errors(exc.detail)
        body = envelope("VALIDATION_ERROR", _summary(fields), fields=fields)
    else:
        code = next((c for cls, c in DRF_CODES if isinstance(exc, cls)), None)
        code = code or str(exc.default_code).upper()
        body = envelope(code, _message(exc.detail, "Request refused."))
    set_rollback()
    return Response(body, status=exc.status_code, headers=headers)


def flatten_errors(detail, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail as {"field": ["message", ...]}, nested names joined by dots."""
    fields: dict[str, list[str]] = {}
    if isinstance(detail, Mapping):
        for name, value in detail.items():
            key = f"{prefix}.{name}" if prefix else str(name)
            for sub, messages in flatten_errors(value, key).items():
                fields.setdefault(sub, []).extend(messages)
    elif isinstance(detail, list):
        for item in detail:
            if isinstance(item, Mapping | list):
                for sub, messages in flatten_errors(item, prefix).items():
                    fields.setdefault(sub, []).extend(messages)
            else:
                fields.setdefault(prefix or "non_field_errors", []).append(str(item))
    else:
        fields.setdefault(prefix or "non_field_errors", []).append(str(detail))
    return fields


def _summary(fields: dict[str, list[str]]) -> str:
    """One line a person can read: the first problem of each field."""
    parts = [
        messages[0] if name == "non_field_errors" else f"{name}: {messages[0]}"
        for name, messages in fields.items()
        if messages
    ]
    text = " ".join(parts) or "The request is not valid."
    return text if len(text) <= 500 else text[:497] + "…"


def _message(value, default: str) -> str:
    if isinstance(value, Exception):
        value = value.args[0] if value.args else ""
    if isinstance(value, list | tuple):
        value = " ".join(str(v) for v in value)
    elif isinstance(value, Mapping):
        value = " ".join(str(v) for v in value.values())
    text = str(value or "").strip()
    return text or default


def new_request_id() -> str:
    return "req_" + secrets.token_hex(8)


def _internal_error(exc: Exception, request) -> Response:
    request_id = new_request_id()
    path = getattr(request, "path", "?")
    logger.error(
        "API request %s %s failed (%s)",
        getattr(request, "method", "?"),
        path,
        request_id,
        exc_info=(type(exc), exc, exc.__traceback__),
    )
    set_rollback()
    return Response(_internal_error_body(request_id), status=500)


def _internal_error_body(request_id: str) -> dict:
    return envelope(
        "INTERNAL_ERROR",
        f"Something went wrong on our side. It is logged as {request_id}; quote it if you ask "
        "for help. Nothing you sent was applied unless you can see it.",
        request_id=request_id,
    )


@csrf_exempt  # like every API view: no cookies here, and a 404 must not become a CSRF 403
def api_not_found(request: HttpRequest, *args, **kwargs) -> JsonResponse:
    """Any URL under /api/ that no endpoint matches (unknown path, bad uuid or slug)."""
    message = f"No endpoint at {request.path}."
    if not request.path.endswith("/"):
        message += " API paths end with a slash."
    return JsonResponse(envelope("NOT_FOUND", message), status=404)


def server_error(request: HttpRequest, *args, **kwargs):
    """handler500: the envelope under /api/, the portal's error page elsewhere."""
    if request.path.startswith(API_PREFIX):
        request_id = new_request_id()
        logger.error(
            "API request %s %s failed outside the view (%s)",
            request.method,
            request.path,
            request_id,
        )
        return JsonResponse(_internal_error_body(request_id), status=500)
    return django_server_error(request, *args, **kwargs)


def payload_too_large(request: HttpRequest) -> HttpResponse:
    """413: the envelope under /api/, a plain page elsewhere (no base template: this answers
    before the session and the user are loaded)."""
    if request.path.startswith(API_PREFIX):
        body = envelope("PAYLOAD_TOO_LARGE", payload_too_large_message())
        return JsonResponse(body, status=413)
    limit_kb = settings.DATA_UPLOAD_MAX_MEMORY_SIZE // 1024
    html = loader.render_to_string("413.html", {"limit_kb": limit_kb})
    return HttpResponse(html, status=413)


def bad_request(request: HttpRequest, exception: Exception | None = None, *args, **kwargs):
    """handler400: a body over the upload limit found only while it was read (no or a false
    Content-Length) answers 413 like the up-front check; any other 400 is Django's page, or the
    envelope under /api/."""
    if isinstance(exception, RequestDataTooBig):
        return payload_too_large(request)
    if request.path.startswith(API_PREFIX):
        return JsonResponse(envelope("VALIDATION_ERROR", "Bad request."), status=400)
    return django_bad_request(request, exception or Exception("Bad request"), *args, **kwargs)
