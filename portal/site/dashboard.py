"""What a team's dashboard shows: money, what is running now, and how the last month went."""

from django.utils import timezone

from billing.charts import spend_chart
from billing.selectors import budget_status, wallet_summary
from billing.spend import spend_per_day
from portal.teams.models import Membership, Team
from runs.models import LIVE_STATUSES, RunStatus
from runs.selectors import runs_for_team, runs_waiting_for, team_run_stats


def team_dashboard_context(*, team: Team, membership: Membership | None, user=None) -> dict:
    """membership is None for a billing admin reading the team without belonging to it."""
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
        "waiting_count": runs_waiting_for(user),
        # "Spent this month" counts from here (the viewer's zone), as wallet_summary does.
        "month_start": timezone.localdate().replace(day=1),
    }
