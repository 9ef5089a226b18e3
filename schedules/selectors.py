"""Reads the schedule pages and the API share."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Count, OuterRef, QuerySet, Subquery, Sum, UUIDField
from django.db.models.functions import TruncMonth
from django.http import Http404
from django.utils import timezone

from portal.teams.access import membership_or_404
from portal.teams.models import Membership, Team
from schedules import cron
from schedules.models import Schedule, ScheduleLaunch


def schedules_for_team(team: Team) -> QuerySet[Schedule]:
    """The team's schedules, each with its latest occurrence's outcome, run and reason
    (`last_outcome`, `last_run_id`, `last_reason`), in one query."""
    latest = ScheduleLaunch.objects.filter(schedule=OuterRef("pk")).order_by("-occurrence")
    return (
        Schedule.objects.filter(team=team)
        .select_related("created_by", "team")
        .annotate(
            last_outcome=Subquery(latest.values("outcome")[:1]),
            last_run_id=Subquery(latest.values("run_id")[:1], output_field=UUIDField()),
            last_reason=Subquery(latest.values("reason")[:1]),
        )
    )


def schedule_for_member(user, schedule_id) -> tuple[Schedule, Membership]:
    """The schedule and the caller's membership of its team; 404 for anyone outside it, in
    the words of a schedule that does not exist (the answer must not tell which ids do)."""
    try:
        schedule = Schedule.objects.select_related("team", "created_by").get(pk=schedule_id)
        return schedule, membership_or_404(user, schedule.team)
    except (Schedule.DoesNotExist, Http404, ValueError, TypeError) as exc:
        raise Http404("No such schedule.") from exc


def upcoming(
    schedule: Schedule, *, count: int = 5, now: dt.datetime | None = None
) -> list[dt.datetime]:
    """The next `count` occurrences in the schedule's own zone; none while it is paused."""
    if not schedule.enabled:
        return []
    return preview(schedule.cron, schedule.timezone, count=count, now=now)


def preview(
    expr: str, zone: str, *, count: int = 5, now: dt.datetime | None = None
) -> list[dt.datetime]:
    """The next `count` occurrences of any valid expression, in its zone (the form's preview)."""
    instants = cron.next_occurrences(expr, zone, after=now or timezone.now(), count=count)
    tz = cron.zone_for(zone)
    return [instant.astimezone(tz) for instant in instants]


def launches_of(schedule: Schedule) -> QuerySet[ScheduleLaunch]:
    return ScheduleLaunch.objects.filter(schedule=schedule).select_related("run")


@dataclass(frozen=True)
class MonthSpend:
    month: dt.date
    runs: int
    charged_cents: int
    held_cents: int


def spend_per_month(schedule: Schedule, *, months: int = 12) -> list[MonthSpend]:
    """What the schedule's runs cost, month by month (TIME_ZONE months), newest first."""
    rows = (
        ScheduleLaunch.objects.filter(schedule=schedule, run__isnull=False)
        .annotate(month=TruncMonth("run__created_at"))
        .values("month")
        .annotate(
            runs=Count("run"),
            charged=Sum("run__charged_cents"),
            held=Sum("run__held_cents"),
        )
        .order_by("-month")[:months]
    )
    return [
        MonthSpend(
            month=row["month"].date() if isinstance(row["month"], dt.datetime) else row["month"],
            runs=row["runs"],
            charged_cents=row["charged"] or 0,
            held_cents=row["held"] or 0,
        )
        for row in rows
    ]
