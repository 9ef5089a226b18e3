"""Writes to the core's records: personal API tokens."""

import datetime as dt
import secrets

from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils import timezone

from portal.core.models import ApiToken

# A token is this marker and 43 URL-safe characters (256 random bits). The marker makes a leaked
# token easy to recognise (secret scanners, logs); the token's first PREFIX_LENGTH characters are
# kept in clear so a person can tell their tokens apart.
API_TOKEN_MARKER = "cpt_"  # noqa: S105 (a public marker, not a secret)
API_TOKEN_PREFIX_LENGTH = 12
API_TOKEN_NAME_MAX = 100
# last_used_at is a hint for people, not an audit log: one write a minute per token is plenty,
# and saves a write on every API call.
API_TOKEN_USE_RESOLUTION = dt.timedelta(minutes=1)


def api_token_create(*, user, name: str) -> tuple[ApiToken, str]:
    """Make a personal API token; returns the row and the token, which is never stored."""
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "Give the token a name, e.g. the script that will use it."})
    if len(name) > API_TOKEN_NAME_MAX:
        raise ValidationError({"name": f"Keep the name to {API_TOKEN_NAME_MAX} characters."})
    token = API_TOKEN_MARKER + secrets.token_urlsafe(32)
    row = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=token[:API_TOKEN_PREFIX_LENGTH],
        secret_sha256=ApiToken.digest(token),
    )
    return row, token


def api_token_revoke(*, token: ApiToken) -> ApiToken:
    """Revoke a token for good; revoking twice keeps the first date."""
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    token.refresh_from_db(fields=["revoked_at"])
    return token


def api_token_mark_used(*, token: ApiToken) -> None:
    """Record that the token was just used, at most once per API_TOKEN_USE_RESOLUTION."""
    now = timezone.now()
    stale = now - API_TOKEN_USE_RESOLUTION
    if token.last_used_at is not None and token.last_used_at > stale:
        return  # recent enough: no write at all
    # The condition repeats the check in SQL, so concurrent calls write once between them.
    ApiToken.objects.filter(pk=token.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lte=stale)
    ).update(last_used_at=now)
    token.last_used_at = now
