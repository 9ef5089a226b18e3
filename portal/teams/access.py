"""Who may see and do what in a team.

Every team-scoped page goes through here: a person who is not a member gets 404 (the team's
existence is not theirs to learn), a member whose role is too low gets 403 with a message that
says which role the action needs.
"""

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest

from portal.teams.models import Membership, Role, Team

BILLING_ADMIN_PERMISSION = "billing.manage_wallets"


def membership_or_404(user, team: Team | int | str) -> Membership:
    """The user's membership of a team (given as object, id or slug), or 404."""
    if not user.is_authenticated:
        raise Http404
    lookup = (
        {"team": team}
        if isinstance(team, Team)
        else ({"team_id": team} if isinstance(team, int) else {"team__slug": team})
    )
    membership = Membership.objects.select_related("team").filter(user=user, **lookup).first()
    if membership is None:
        raise Http404("No such team.")
    return membership


def require_role(membership: Membership, role: str, *, action: str) -> None:
    if not membership.has_role(role):
        raise PermissionDenied(
            f"You are a {membership.get_role_display().lower()} in {membership.team.name}; "
            f"to {action} you need the {Role(role).label.lower()} role. "
            "Ask one of the team's managers."
        )


def is_billing_admin(user) -> bool:
    return bool(user.is_authenticated and user.has_perm(BILLING_ADMIN_PERMISSION))


def team_view(role: str = Role.VIEWER, *, action: str = "do that") -> Callable:
    """Decorate a view taking `slug`: sets request.team and request.membership, or 404/403."""

    def decorator(view: Callable) -> Callable:
        @login_required
        @wraps(view)
        def wrapped(request: HttpRequest, slug: str, *args, **kwargs):
            membership = membership_or_404(request.user, slug)
            require_role(membership, role, action=action)
            request.team = membership.team
            request.membership = membership
            return view(request, slug, *args, **kwargs)

        return wrapped

    return decorator
