"""What a team's dashboard shows. Runs and billing add their panels here as they arrive."""

from portal.models import Membership, Team
from portal.selectors import team_members


def team_dashboard_context(*, team: Team, membership: Membership) -> dict:
    return {
        "team": team,
        "membership": membership,
        "member_count": team_members(team).count(),
    }
