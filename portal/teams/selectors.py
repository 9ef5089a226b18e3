"""Reads about teams that pages and the API share."""

from django.db.models import QuerySet

from portal.teams.models import Membership, MembershipChange, Team


def memberships_for_user(user) -> QuerySet[Membership]:
    if not user.is_authenticated:
        return Membership.objects.none()
    return Membership.objects.filter(user=user).select_related("team").order_by("team__name")


def team_members(team: Team) -> QuerySet[Membership]:
    return team.memberships.select_related("user").order_by("user__username")


def team_membership_changes(team: Team, *, limit: int = 50) -> QuerySet[MembershipChange]:
    return team.membership_changes.select_related("actor")[:limit]
