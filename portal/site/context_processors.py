from django.conf import settings

from portal.notifications.selectors import unread_count
from portal.teams.access import is_billing_admin
from portal.teams.selectors import memberships_for_user


def navigation(request):
    """The team switcher: the person's teams, and which one the page belongs to."""
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        # The demo login is shown on development machines only, where seed_demo created it.
        return {"show_demo_login": settings.DEBUG}
    memberships = list(memberships_for_user(request.user))
    current = getattr(request, "team", None)
    if current is None and request.resolver_match:
        slug = request.resolver_match.kwargs.get("slug")
        current = next((m.team for m in memberships if m.team.slug == slug), None)
    return {
        "nav_memberships": memberships,
        "current_team": current,
        "is_billing_admin": is_billing_admin(request.user),
        "unread_notifications": unread_count(request.user),
        "current_can_manage": any(
            m.team == current and m.can_manage for m in memberships if current is not None
        ),
    }
