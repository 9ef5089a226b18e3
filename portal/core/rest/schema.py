"""What the OpenAPI description (drf-spectacular, /api/schema/) says beyond what it infers:
the bearer scheme, the error envelope on every refusal, and the idempotency headers.

schemathesis checks every response of the test suite's fuzzing against this description
(tests/core/rest/test_schema.py), so what is documented here is what the endpoints really answer.
"""

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from portal.core.rest.idempotency import HEADER, KEY_PATTERN, REPLAYED_HEADER

ERROR_CODES = [
    "VALIDATION_ERROR",
    "UNAUTHENTICATED",
    "INSUFFICIENT_FUNDS",
    "PERMISSION_DENIED",
    "NOT_FOUND",
    "METHOD_NOT_ALLOWED",
    "INVALID_STATE",
    "IDEMPOTENCY_IN_FLIGHT",
    "UNSUPPORTED_MEDIA_TYPE",
    "IDEMPOTENCY_KEY_REUSED",
    "THROTTLED",
    "INTERNAL_ERROR",
]


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "portal.core.rest.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "cpt_…",
            "description": (
                "A personal API token, made on the portal's Account page or with "
                "`manage.py create_api_token`. It acts as you, with your teams and roles."
            ),
        }


class SessionReadScheme(OpenApiAuthenticationExtension):
    """The login session, on the reads only (portal.core.rest.authentication)."""

    target_class = "portal.core.rest.authentication.SessionReadAuthentication"
    name = "sessionCookie"

    def get_security_requirement(self, auto_schema):
        if auto_schema.method.upper() not in ("GET", "HEAD", "OPTIONS"):
            return None  # a write through the session is refused: a token is needed
        return {self.name: []}

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": settings.SESSION_COOKIE_NAME,
            "description": (
                "Logged in to the portal in this browser: the API docs' reads work with it, "
                "nothing to enter. Changes need a bearer token."
            ),
        }


ErrorSerializer = type(
    "ErrorSerializer",
    (serializers.Serializer,),
    {
        "__doc__": "What went wrong.",
        "code": serializers.ChoiceField(choices=ERROR_CODES),
        "message": serializers.CharField(help_text="For people: what happened and what to do."),
        "fields": serializers.DictField(
            child=serializers.ListField(child=serializers.CharField()),
            required=False,
            help_text="VALIDATION_ERROR only: the messages for each invalid field.",
        ),
        "request_id": serializers.CharField(
            required=False, help_text="INTERNAL_ERROR only: the id the failure is logged under."
        ),
    },
)


class ErrorEnvelopeSerializer(serializers.Serializer):
    """Every error the API answers."""

    error = ErrorSerializer()


ERROR_DESCRIPTIONS = {
    400: "VALIDATION_ERROR: the body, a query parameter or a header is not valid.",
    401: "UNAUTHENTICATED: no token, or a malformed, unknown, revoked or expired one.",
    402: "INSUFFICIENT_FUNDS: the team's wallet cannot hold the run's maximum cost; "
    "BUDGET_EXCEEDED: the team's month (held plus spent) would go over its monthly budget; "
    "MEMBER_LIMIT_EXCEEDED: your month in the team would go over your monthly limit. "
    "Nothing was created.",
    403: (
        "PERMISSION_DENIED: your role in this team does not allow it, or your token lacks the "
        "scope this endpoint needs (the message names it)."
    ),
    404: "NOT_FOUND: no such object, or not one of your teams'.",
    409: "INVALID_STATE: the run's state does not allow it.",
    415: "UNSUPPORTED_MEDIA_TYPE: send the body as application/json.",
    422: "IDEMPOTENCY_KEY_REUSED: this Idempotency-Key came with another request.",
    429: "THROTTLED: too many requests from you (all your tokens together); see Retry-After.",
    500: "INTERNAL_ERROR: logged under the request_id given.",
}
IDEMPOTENT_409 = (
    "INVALID_STATE, or IDEMPOTENCY_IN_FLIGHT: the first request with this Idempotency-Key "
    "is still being carried out; retry with the same key (see Retry-After)."
)

READ_ERRORS = (400, 401, 404, 429, 500)
WRITE_ERRORS = (400, 401, 403, 404, 415, 429, 500)


def error_responses(*statuses: int, descriptions: dict[int, str] | None = None) -> dict:
    descriptions = {**ERROR_DESCRIPTIONS, **(descriptions or {})}
    if 401 in statuses and 403 not in statuses:
        # Whatever is authenticated can be refused for a token scope (portal.core.rest.scopes).
        statuses = tuple(sorted((*statuses, 403)))
    return {
        status: OpenApiResponse(ErrorEnvelopeSerializer, description=descriptions[status])
        for status in statuses
    }


IDEMPOTENCY_KEY = OpenApiParameter(
    HEADER,
    str,
    OpenApiParameter.HEADER,
    required=False,
    pattern=KEY_PATTERN,
    description=(
        "Makes the request safe to retry: the same key with the same body returns the first "
        "response again (with `Idempotent-Replayed: true`) for 24 h; after that it starts a new "
        "request. Per user."
    ),
)

# Response headers.
IDEMPOTENT_REPLAYED = OpenApiParameter(
    REPLAYED_HEADER,
    str,
    OpenApiParameter.HEADER,
    enum=["true"],
    response=[201],
    description="Present when this is the stored response of an earlier request with the same key.",
)
RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    int,
    OpenApiParameter.HEADER,
    response=[429],
    required=True,
    description="Seconds to wait before trying again.",
)
RETRY_AFTER_IN_FLIGHT = OpenApiParameter(
    "Retry-After",
    int,
    OpenApiParameter.HEADER,
    response=[409],
    description="With IDEMPOTENCY_IN_FLIGHT: seconds to wait before retrying with the same key.",
)
WWW_AUTHENTICATE = OpenApiParameter(
    "WWW-Authenticate",
    str,
    OpenApiParameter.HEADER,
    response=[401],
    required=True,
    description='`Bearer realm="api"`.',
)
COMMON_HEADERS = [RETRY_AFTER, WWW_AUTHENTICATE]

# Path parameters, with the shapes the URL patterns accept (anything else is a 404).
TEAM_SLUG = OpenApiParameter(
    "slug",
    str,
    OpenApiParameter.PATH,
    pattern=r"^[-a-zA-Z0-9_]+$",
    description="The team's address, as in /teams/<slug>/.",
)
RUN_ID = OpenApiParameter(
    "run_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The run's id."
)
