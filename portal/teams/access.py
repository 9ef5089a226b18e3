"""Who may see and do what in a team: the one place the portal decides it.

A person who may not see a team gets 404, on every page and endpoint: the team's existence is
not theirs to learn. A member whose role is too low for an action gets 403 with a message that
says which role it needs. Billing admins (the `billing.manage_wallets` permission) may read any
team's wallet, dashboard, runs and run pages without being a member (`billing_admins_read=True`):
they follow money to what spent it. Reading is all: every action still needs a membership.
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Q, Subquery
from django.http import Http404, HttpRequest
from django.http.response import HttpResponseBase

from portal.core.http import AuthenticatedRequest
from portal.core.models import TokenScope
from portal.teams.models import Membership, Role, Team

BILLING_ADMIN_PERMISSION = "billing.manage_wallets"


def is_billing_admin(user: Any) -> bool:
    """Whether `user` holds the billing admin permission (directly or through a group).

    One query, remembered on the user object for the request: every page asks (the menu, the
    read rule), and Django's `has_perm` would load all of the person's permissions in two.
    """
    if not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    cached = getattr(user, "_billing_admin", None)
    if cached is None:
        app_label, codename = BILLING_ADMIN_PERMISSION.split(".", 1)
        cached = (
            Permission.objects.filter(content_type__app_label=app_label, codename=codename)
            .filter(Q(user=user) | Q(group__user=user))
            .exists()
        )
        user._billing_admin = cached
    return bool(cached)


class TeamRequest(AuthenticatedRequest):
    """The request of a `team_view`: the team and the person's membership of it."""

    team: Team
    membership: Membership


class TeamReadRequest(AuthenticatedRequest):
    """The request of a `team_view(billing_admins_read=True)`: `membership` is None for a
    billing admin who reads the team without belonging to it."""

    team: Team
    membership: Membership | None


@dataclass(frozen=True)
class TeamAccess:
    """A team someone may see, and their membership of it (None for a billing admin who reads
    a team they do not belong to)."""

    team: Team
    membership: Membership | None


def team_access(user: Any, slug: str, *, billing_admins_read: bool = False) -> TeamAccess:
    """The team with this slug as `user` may see it, or Http404.

    One query: the team and the person's membership of it, side by side (pages keep a budget
    of ten queries).
    """
    if not user.is_authenticated:
        raise Http404("No such team.")
    mine = Membership.objects.filter(team=OuterRef("pk"), user=user)
    team = (
        Team.objects.filter(slug=slug)
        .annotate(
            membership_pk=Subquery(mine.values("pk")[:1]),
            membership_role=Subquery(mine.values("role")[:1]),
        )
        .first()
    )
    if team is None:
        raise Http404("No such team.")
    if team.membership_pk is not None:
        membership = Membership(
            pk=team.membership_pk, team=team, user_id=user.pk, role=team.membership_role
        )
        return TeamAccess(team=team, membership=membership)
    if billing_admins_read and is_billing_admin(user):
        return TeamAccess(team=team, membership=None)
    raise Http404("No such team.")


def team_read_access(user: Any, team: Team) -> TeamAccess:
    """The access of `user` to a team already loaded (a run's, say): a member, or a billing
    admin reading as such (membership None); Http404 for anyone else. The same rule as
    `team_access(..., billing_admins_read=True)`."""
    if not user.is_authenticated:
        raise Http404("No such team.")
    membership = Membership.objects.filter(team=team, user=user).first()
    if membership is not None:
        membership.team = team
        return TeamAccess(team=team, membership=membership)
    if is_billing_admin(user):
        return TeamAccess(team=team, membership=None)
    raise Http404("No such team.")


def require_membership(membership: Membership | None, role: str, *, action: str) -> Membership:
    """`require_role` for a reader who may have no membership (a billing admin reading a team):
    they may look, not act."""
    if membership is None:
        raise PermissionDenied(
            f"You can read this team's pages as a billing admin; to {action} you need to be a "
            f"{Role(role).label.lower()} of the team. Ask one of its managers to add you."
        )
    require_role(membership, role, action=action)
    return membership


def membership_or_404(user: Any, team: Team | int | str) -> Membership:
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


def team_view(
    role: str = Role.VIEWER, *, action: str = "do that", billing_admins_read: bool = False
) -> Callable[[Callable[..., HttpResponseBase]], Callable[..., HttpResponseBase]]:
    """Decorate a view taking `slug`: sets request.team and request.membership (None for a
    billing admin reading as such), or answers 404/403.

    With `billing_admins_read`, a billing admin who is not a member gets in to a viewer's page
    and is told (403) on a page that needs a higher role: they can see the team, so a 404
    would be a lie."""

    def decorator(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
        @login_required
        @wraps(view)
        def wrapped(request: HttpRequest, slug: str, *args: Any, **kwargs: Any) -> HttpResponseBase:
            access = team_access(request.user, slug, billing_admins_read=billing_admins_read)
            if access.membership is not None:
                require_role(access.membership, role, action=action)
            elif role != Role.VIEWER:
                require_membership(None, role, action=action)
            request.team = access.team  # type: ignore[attr-defined]
            request.membership = access.membership  # type: ignore[attr-defined]
            return view(request, slug, *args, **kwargs)

        return wrapped

    return decorator


def token_scopes_allowed(user: Any) -> list[str]:
    """The API token scopes this person's roles make useful today: the default for a new
    token. Reading runs and wallets is open to every member; launching needs the member role in
    some team, topping up the billing-admin permission. (A scope only narrows a token; the
    roles are checked again on every call.)"""
    scopes = [TokenScope.RUNS_READ, TokenScope.BILLING_READ]
    launches = (
        user.is_superuser
        or Membership.objects.filter(user=user, role__in=[Role.MEMBER, Role.MANAGER]).exists()
    )
    if launches:
        scopes.append(TokenScope.RUNS_WRITE)
    if is_billing_admin(user):
        scopes.append(TokenScope.BILLING_WRITE)
    return [scope.value for scope in TokenScope if scope in scopes]


def billing_admin_required(view):
    """The organisation's billing pages: billing admins only; anyone else is told what is missing
    (a 403 naming the billing admin role, not a team role they could not have)."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not is_billing_admin(request.user):
            raise PermissionDenied(
                "The organisation's billing pages are for billing admins. Your team's wallet "
                "is on the team's own pages; ask a billing admin for a top-up or a correction."
            )
        return view(request, *args, **kwargs)

    return wrapped
