"""Reads about teams that pages and the API share."""

from django.db.models import F, QuerySet

from portal.models import ApiToken, Membership, MembershipChange, Team


def memberships_for_user(user) -> QuerySet[Membership]:
    if not user.is_authenticated:
        return Membership.objects.none()
    return Membership.objects.filter(user=user).select_related("team").order_by("team__name")


def team_members(team: Team) -> QuerySet[Membership]:
    return team.memberships.select_related("user").order_by("user__username")


def team_membership_changes(team: Team, *, limit: int = 50) -> QuerySet[MembershipChange]:
    return team.membership_changes.select_related("actor")[:limit]


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
