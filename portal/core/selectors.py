"""Reads of the core's records that pages and the REST plumbing share."""

from django.db.models import F, QuerySet

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
