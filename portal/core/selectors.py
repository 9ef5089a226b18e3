"""Reads of the core's records that pages and the REST plumbing share."""

import datetime as dt

from django.db.models import F, Q, QuerySet
from django.utils import timezone

from portal.core.models import ApiToken


def api_tokens_for_user(user) -> QuerySet[ApiToken]:
    """The person's tokens, active first, newest first."""
    return ApiToken.objects.filter(user=user).order_by(
        F("revoked_at").asc(nulls_first=True), "-created_at", "-id"
    )


def api_token_for_secret(token: str) -> ApiToken | None:
    """The token row a presented token belongs to (revoked or not), by its hash; one query."""
    return (
        ApiToken.objects.select_related("user").filter(secret_sha256=ApiToken.digest(token)).first()
    )


def api_tokens_live(*, user, now: dt.datetime | None = None) -> QuerySet[ApiToken]:
    """The person's tokens that still work: not revoked, not expired."""
    now = now or timezone.now()
    return ApiToken.objects.filter(user=user, revoked_at__isnull=True).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    )
