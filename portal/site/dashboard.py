"""What a team's dashboard shows: money, what is running now, and how the last month went."""

from billing.charts import spend_chart
from billing.selectors import budget_status, spend_per_day, wallet_summary
from portal.teams.models import Membership, Team
from runs.models import LIVE_STATUSES, RunStatus
from runs.selectors import runs_for_team, team_run_stats


def team_dashboard_context(*, team: Team, membership: Membership) -> dict:
    runs = runs_for_team(team)
    waiting = [*LIVE_STATUSES, RunStatus.PENDING, RunStatus.AWAITING_APPROVAL]
    live = list(runs.filter(status__in=waiting)[:8])
    return {
        "team": team,
        "membership": membership,
        "wallet": wallet_summary(team),
        "budget": budget_status(team),
        "stats": team_run_stats(team),
        "live_runs": live,
        "needs_human": [run for run in live if run.status == RunStatus.AWAITING_HUMAN],
        "awaiting_approval": [run for run in live if run.status == RunStatus.AWAITING_APPROVAL],
        "recent_runs": list(runs.exclude(status__in=waiting)[:8]),
        "chart": spend_chart(spend_per_day(team, days=30)),
    }
