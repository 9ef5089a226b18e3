"""The portal's side of the Coasty API: HTTP client, event-stream follower, webhook signing.

Nothing of Django here (import-linter checks it), so the package can be used and tested on its
own; `runs.upstream.client_from_settings()` is the one bridge from the portal's settings.
"""

from .client import (
    CoastyClient,
    CreateRunResult,
    IdempotencyLookup,
    canonical_json,
    validate_idempotency_key,
)
from .errors import (
    CoastyAuthError,
    CoastyBadResponse,
    CoastyError,
    CoastyIdempotencyInFlight,
    CoastyIdempotencyKeyReused,
    CoastyInsufficientCredits,
    CoastyInvalidState,
    CoastyNotFound,
    CoastyRateLimited,
    CoastyServerError,
    CoastyTransportError,
    CoastyValidationError,
)
from .retry import RetryPolicy, key_is_spent
from .signing import (
    WebhookSignatureError,
    WebhookSignatureMalformed,
    WebhookSignatureMismatch,
    WebhookSignatureStale,
    sign,
    signature_header,
    verify,
)
from .sse import FollowStats, SseEvent, follow_events, iter_events

__all__ = [
    "CoastyAuthError",
    "CoastyBadResponse",
    "CoastyClient",
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
    "CreateRunResult",
    "FollowStats",
    "IdempotencyLookup",
    "RetryPolicy",
    "SseEvent",
    "WebhookSignatureError",
    "WebhookSignatureMalformed",
    "WebhookSignatureMismatch",
    "WebhookSignatureStale",
    "canonical_json",
    "follow_events",
    "iter_events",
    "key_is_spent",
    "sign",
    "signature_header",
    "validate_idempotency_key",
    "verify",
]
