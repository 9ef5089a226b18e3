"""Reads about teams that pages and the API share."""

import hmac
import uuid

from django.db.models import QuerySet

from portal.teams.models import Invitation, Membership, MembershipChange, Team


def memberships_for_user(user) -> QuerySet[Membership]:
    if not user.is_authenticated:
        return Membership.objects.none()
    return Membership.objects.filter(user=user).select_related("team").order_by("team__name")


def team_members(team: Team) -> QuerySet[Membership]:
    return team.memberships.select_related("user").order_by("user__username")


def team_membership_changes(team: Team, *, limit: int = 50) -> QuerySet[MembershipChange]:
    return team.membership_changes.select_related("actor")[:limit]


def team_invitations_pending(team: Team) -> QuerySet[Invitation]:
    """The team's invitations still waiting for an answer, expired ones included (a manager
    revokes or re-sends them)."""
    return team.invitations.filter(status=Invitation.Status.PENDING).select_related("invited_by")


# Compared against when the key names no invitation, so a wrong key costs what a wrong token does.
_NO_INVITATION_DIGEST = Invitation.digest("no such invitation")


def invitation_for_link(*, key: uuid.UUID, token: str) -> Invitation | None:
    """The invitation an emailed link names, or None when the key or the token is wrong.

    The key finds the row; the token's digest is then compared in constant time. Whatever is
    wrong, the answer is the same None (the page answers the same 404): a guesser learns
    nothing, not even whether a key exists.
    """
    invitation = Invitation.objects.select_related("team", "invited_by").filter(key=key).first()
    expected = invitation.token_sha256 if invitation is not None else _NO_INVITATION_DIGEST
    matches = hmac.compare_digest(expected, Invitation.digest(token))
    if invitation is None or not matches:
        return None
    return invitation
