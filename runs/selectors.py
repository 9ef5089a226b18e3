"""Reads about runs that pages and the API share."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
import uuid
from dataclasses import dataclass

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery, Sum
from django.http import Http404
from django.utils import timezone

from billing.ledger_groups import LedgerRun, person_named
from billing.spend import day_start
from portal.core.reversing import reverse_with_id
from portal.teams.access import is_billing_admin, membership_or_404
from portal.teams.models import Membership, Role, Team
from runs.coasty import CoastyError
from runs.models import LIVE_STATUSES, Run, RunEvent, RunStatus
from runs.upstream import coasty_quick

logger = logging.getLogger(__name__)

PAGE_SIZE = 25
NO_SUCH_RUN = "No such run."
MACHINES_CACHE_KEY = "coasty:machines"
MACHINES_CACHE_SECONDS = 60
MACHINES_UNAVAILABLE = "Coasty's machine list is unavailable right now; type the machine id."


def run_for_member(user, run_id) -> tuple[Run, Membership]:
    """The run and the caller's membership of its team; 404 for anyone outside that team.

    The same 404, word for word, whether the run does not exist or is another team's: the
    answer must not tell an outsider which run ids exist.
    """
    try:
        run = Run.objects.select_related("team", "created_by", "decided_by").get(pk=run_id)
        return run, membership_or_404(user, run.team)
    except (Run.DoesNotExist, Http404, ValueError, TypeError, ValidationError) as exc:
        raise Http404(NO_SUCH_RUN) from exc


def run_for_reader(user, run_id) -> tuple[Run, Membership | None]:
    """The run and the caller's membership of its team, None for a billing admin who reads it
    without being a member; 404 for anyone else (the rule of
    portal.teams.access.team_read_access).

    One query for the run and the reader's membership side by side, as team_access does for
    a team: the run page keeps a budget of ten queries (tests/test_page_queries.py).
    """
    if not getattr(user, "is_authenticated", False):
        raise Http404(NO_SUCH_RUN)
    mine = Membership.objects.filter(team=OuterRef("team_id"), user=user)
    try:
        run = (
            Run.objects.select_related("team", "created_by", "decided_by")
            .annotate(
                reader_membership_pk=Subquery(mine.values("pk")[:1]),
                reader_role=Subquery(mine.values("role")[:1]),
            )
            .get(pk=run_id)
        )
    except (Run.DoesNotExist, ValueError, TypeError, ValidationError) as exc:
        raise Http404(NO_SUCH_RUN) from exc
    membership_pk = getattr(run, "reader_membership_pk", None)
    if membership_pk is not None:
        role = getattr(run, "reader_role", "")
        return run, Membership(pk=membership_pk, team=run.team, user=user, role=role)
    if is_billing_admin(user):
        return run, None
    raise Http404(NO_SUCH_RUN)


@dataclass(frozen=True)
class RunFilters:
    status: str = ""
    creator_id: int | None = None
    since: dt.date | None = None
    until: dt.date | None = None
    search: str = ""


def runs_for_team(team: Team, filters: RunFilters | None = None) -> QuerySet[Run]:
    filters = filters or RunFilters()
    runs = Run.objects.filter(team=team).select_related("created_by", "decided_by")
    if filters.status == "live":
        runs = runs.filter(
            status__in=[*LIVE_STATUSES, RunStatus.PENDING, RunStatus.AWAITING_APPROVAL]
        )
    elif filters.status:
        runs = runs.filter(status=filters.status)
    if filters.creator_id:
        runs = runs.filter(created_by_id=filters.creator_id)
    if filters.since:
        runs = runs.filter(created_at__gte=day_start(filters.since))
    if filters.until:
        runs = runs.filter(created_at__lt=day_start(filters.until + dt.timedelta(days=1)))
    if filters.search:
        runs = runs.filter(task__icontains=filters.search)
    return runs.order_by("-created_at", "-id")


@dataclass(frozen=True)
class Page:
    items: list
    older: str | None  # cursor for the next page of older runs
    newer: str | None  # cursor for the page of newer runs


def keyset_page(
    runs: QuerySet[Run], *, before: str = "", after: str = "", size: int = PAGE_SIZE
) -> Page:
    """A page of runs by (created_at, id), newest first, without COUNT(*) or OFFSET.

    Stays one indexed query however many runs a team has.
    """
    if after:
        key = _decode(after)
        rows = list(
            runs.filter(Q(created_at__gt=key[0]) | Q(created_at=key[0], id__gt=key[1])).order_by(
                "created_at", "id"
            )[: size + 1]
        )
        has_more_newer = len(rows) > size
        rows = list(reversed(rows[:size]))
        return Page(
            rows,
            older=_encode(rows[-1]) if rows else None,
            newer=_encode(rows[0]) if rows and has_more_newer else None,
        )
    if before:
        key = _decode(before)
        runs = runs.filter(Q(created_at__lt=key[0]) | Q(created_at=key[0], id__lt=key[1]))
    rows = list(runs[: size + 1])
    has_more = len(rows) > size
    rows = rows[:size]
    return Page(
        rows,
        older=_encode(rows[-1]) if rows and has_more else None,
        newer=_encode(rows[0]) if rows and before else None,
    )


def _encode(run: Run) -> str:
    raw = f"{run.created_at.isoformat()}|{run.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode(cursor: str) -> tuple[dt.datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, run_id = raw.split("|", 1)
        at = dt.datetime.fromisoformat(stamp)
        if at.tzinfo is None:
            raise ValueError("a cursor's time carries its zone")
        # In UTC here, so a made-up time at the edge of the calendar fails now, not in the query.
        return at.astimezone(dt.UTC), uuid.UUID(run_id)
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidCursor from exc


class InvalidCursor(ValueError):
    pass


def run_events(run: Run, *, after: int = 0, limit: int = 200) -> list[RunEvent]:
    return list(run.events.filter(seq__gt=after).order_by("seq")[:limit])


def run_events_with_activity(run: Run, *, after: int = 0, limit: int = 200) -> tuple[list, bool]:
    """Coasty's events after `after` (up to `limit`) and the portal's own records placed among
    them (RunActivity.as_event, `source` "portal"), oldest first; and whether more follow.

    A record sits after the Coasty event it followed, so it comes on the page of that event:
    pass the last Coasty seq you have as `after` and you get what came after it.
    """
    rows = list(
        run.events.select_related("actor").filter(seq__gt=after).order_by("seq")[: limit + 1]
    )
    more = len(rows) > limit
    rows = rows[:limit]
    records = run.activities.select_related("actor").filter(after_seq__gte=after)
    if after:
        records = records.filter(after_seq__gt=after)
    if more:
        records = records.filter(after_seq__lte=rows[-1].seq)
    return _merged(rows, records[:ACTIVITY_LIMIT]), more


def run_latest_events(run: Run, *, limit: int = 200) -> list[RunEvent]:
    """The newest `limit` events, oldest first, for the timeline."""
    return list(reversed(run.events.order_by("-seq")[:limit]))


TIMELINE_PAGE = 200
ACTIVITY_LIMIT = 500  # people's own records are few; a bound all the same
SEQ_MAX = 2**62


@dataclass(frozen=True)
class Timeline:
    """One page of a run's timeline, oldest first: Coasty's events and the portal's records."""

    events: list[RunEvent]
    before: int | None  # the page's own bound (None: the latest page)
    earlier: int | None  # `?before=` of the page of earlier events; None on the first page
    last_upstream: RunEvent | None  # the newest of Coasty's events on the page
    preceding: RunEvent | None = None  # the event just before the page (its step may go on)


def timeline_before(raw: str | None) -> int | None:
    """`?before=` as a seq, or None (the latest page) for anything that is not one."""
    if not raw or len(raw) > 20 or not (raw.isascii() and raw.isdigit()):
        return None  # str.isdigit() alone also takes "²", which int() refuses
    value = int(raw)
    return value if 1 <= value <= SEQ_MAX else None


def run_timeline(run: Run, *, before: int | None = None, limit: int = TIMELINE_PAGE) -> Timeline:
    """The newest `limit` of Coasty's events below `before` (all when None), with the portal's
    records placed among them; `earlier` pages back until the first event.

    Keyset by seq, so the 50th page back costs what the first does.
    """
    events = run.events.select_related("actor")
    if before is not None:
        events = events.filter(seq__lt=before)
    rows = list(events.order_by("-seq")[: limit + 1])
    has_earlier = len(rows) > limit
    preceding = rows[limit] if has_earlier else None
    rows = list(reversed(rows[:limit]))
    records = run.activities.select_related("actor")
    if before is not None:
        records = records.filter(after_seq__lt=before)
    if has_earlier:
        # A record after an event on an earlier page is shown on that page.
        records = records.filter(after_seq__gte=rows[0].seq)
    return Timeline(
        events=_merged(rows, records.order_by("-after_seq", "-id")[:ACTIVITY_LIMIT]),
        before=before,
        earlier=rows[0].seq if has_earlier else None,
        last_upstream=rows[-1] if rows else None,
        preceding=preceding,
    )


def _merged(events: list[RunEvent], records) -> list[RunEvent]:
    merged = [*events, *(record.as_event() for record in records)]
    # Coasty's event first, then what people did after it, in the order they did it.
    merged.sort(key=lambda e: (e.seq, e.source == "portal", e.created_at))
    return merged


def runs_waiting_for(user) -> int:
    """How many runs wait for this person: paused for a human in a team where they may resume
    them (members and managers). The tab title shows it."""
    if not getattr(user, "is_authenticated", False):
        return 0
    return Run.objects.filter(
        status=RunStatus.AWAITING_HUMAN,
        team__memberships__user=user,
        team__memberships__role__in=[Role.MEMBER, Role.MANAGER],
    ).count()


def team_creators(team: Team) -> list[tuple[int, str]]:
    return [(m.user_id, m.user.get_username()) for m in team.memberships.select_related("user")]


def team_run_stats(team: Team) -> dict:
    since = timezone.now() - dt.timedelta(days=30)
    counts = dict(
        Run.objects.filter(team=team, created_at__gte=since)
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    totals = Run.objects.filter(team=team, created_at__gte=since).aggregate(
        steps=Sum("steps_completed"), charged=Sum("charged_cents")
    )
    total = sum(counts.values())
    live = sum(counts.get(s, 0) for s in [*LIVE_STATUSES, RunStatus.PENDING])
    succeeded = counts.get(RunStatus.SUCCEEDED, 0)
    failed = sum(
        counts.get(s, 0) for s in (RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.SUBMIT_FAILED)
    )
    cancelled = counts.get(RunStatus.CANCELLED, 0)
    return {
        "last_30_days": total,
        "live": live,
        "succeeded": succeeded,
        "failed": failed,
        "cancelled": cancelled,
        # Every status counts somewhere: whatever is none of the above (a status added later,
        # waiting for approval, rejected) is "other", so the parts always add up to the total.
        "other": total - live - succeeded - failed - cancelled,
        "steps": totals["steps"] or 0,
        "charged_cents": totals["charged"] or 0,
    }


def machines_for_launch() -> tuple[list[dict], str]:
    """Coasty's machines for the launch form's picker, cached; ([], reason) when unavailable."""
    cached = cache.get(MACHINES_CACHE_KEY)
    if cached is not None:
        return cached, "" if cached else MACHINES_UNAVAILABLE
    try:
        machines = coasty_quick().list_machines()
    except CoastyError as exc:
        logger.warning("machine list unavailable: %s", exc)
        # Remember the failure briefly, so a struggling Coasty is not asked on every page view.
        cache.set(MACHINES_CACHE_KEY, [], 15)
        return [], MACHINES_UNAVAILABLE
    rows = [
        {
            "id": str(m.get("id")),
            "name": str(m.get("display_name") or m.get("id")),
            "status": str(m.get("status", "")),
        }
        for m in machines
        if isinstance(m, dict) and m.get("id")
    ]
    cache.set(MACHINES_CACHE_KEY, rows, MACHINES_CACHE_SECONDS)
    return rows, ""


def approvals_for(user) -> QuerySet[Run]:
    """Runs waiting for `user`'s approval: awaiting_approval in teams where they are a manager,
    launched by someone else, oldest first (for the inbox and the dashboard)."""
    managed = Membership.objects.filter(user=user, role=Role.MANAGER).values("team_id")
    return (
        Run.objects.filter(status=RunStatus.AWAITING_APPROVAL, team_id__in=managed)
        .exclude(created_by=user)
        .select_related("team", "created_by")
        .order_by("created_at", "id")
    )


def runs_for_ledger(run_ids: list[uuid.UUID]) -> dict[uuid.UUID, LedgerRun]:
    """The wallet ledger's words for its runs (billing.ledger_groups.describe_runs, through
    the BILLING_LEDGER_RUNS setting): task, launcher and status, one query. Plain values, not
    model instances: a page's 50 runs cost 1.5 ms of CPU instead of 2.7 (deferred instances
    of the run and its launcher each)."""
    rows = Run.objects.filter(pk__in=run_ids).values_list(
        "id",
        "task",
        "status",
        "created_by__username",
        "created_by__first_name",
        "created_by__last_name",
    )
    labels = dict(Run._meta.get_field("status").flatchoices)
    described = {}
    for pk, task, status, username, first_name, last_name in rows:
        described[pk] = LedgerRun(
            task=task,
            launched_by=person_named(username, first_name, last_name) or "—",
            status=status,
            status_label=str(labels.get(status, status)),
            url=reverse_with_id("run_detail", pk),
        )
    return described
