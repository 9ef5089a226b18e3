"""Every write of the schedules app: creating and changing schedules, and the tick that
launches their occurrences.

Exactly once per occurrence. The tick takes a due schedule's row lock (PostgreSQL: `FOR
UPDATE SKIP LOCKED`, so concurrent ticks share the due schedules instead of queuing on one;
SQLite: its transactions start IMMEDIATE and so run one at a time), inserts the occurrence's
`ScheduleLaunch` row under its unique (schedule, occurrence) key, launches the run through
`runs.services.run_launch` under a launch token derived from the same pair, and moves the
schedule's `next_occurrence_at` past now — all in one transaction. A second tick, a second
worker cluster, a tick replayed after a crash or one whose clock stepped back either finds the
schedule not due any more or finds the occurrence's row taken, and launches nothing.

Lock order: the schedule row, then the occurrence row, then whatever the launch service locks
(the run, the hold, the wallet's accounts, in billing's order). Nothing locks a schedule after
an account, so this cannot deadlock with billing.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.urls import reverse
from django.utils import timezone

from billing.errors import BillingError
from billing.prices import step_price_cents
from portal.core.money import format_cents
from portal.notifications.models import EventType
from portal.notifications.services import event_record
from portal.teams.models import Membership, Role, Team
from runs.models import Run, RunStatus
from runs.services import LaunchRequest, run_launch
from schedules import cron
from schedules.models import CatchUp, LaunchOutcome, Schedule, ScheduleLaunch

logger = logging.getLogger(__name__)

# Run statuses that count as a failed occurrence towards the schedule pausing itself. A
# cancel is a person's choice, not a failure of the schedule.
FAILED_RUN_STATUSES = frozenset({RunStatus.SUBMIT_FAILED, RunStatus.FAILED, RunStatus.TIMED_OUT})

TEMPLATE_FIELDS = (
    "machine_id",
    "task",
    "cua_version",
    "max_steps",
    "deadline_seconds",
    "on_awaiting_human",
)
SCHEDULE_FIELDS = ("name", "cron", "timezone", "enabled", "catch_up", *TEMPLATE_FIELDS)

# Launch tokens of scheduled runs: uuid5 of (schedule, occurrence) in this namespace.
LAUNCH_TOKEN_NAMESPACE = uuid.UUID("6b1f4a52-9d1c-4f0e-8a57-5c3d2e1f0a9b")


class ScheduleInvalid(ValueError):
    """What a person gave cannot make a schedule; `fields` maps each field to its message."""

    def __init__(self, fields: dict[str, str]):
        self.fields = fields
        super().__init__(" ".join(fields.values()))


# --- Validation, shared by the form and the API -----------------------------------------------


def run_max_cost_cents(*, cua_version: str, max_steps: int) -> int:
    return max_steps * step_price_cents(cua_version)


def schedule_validate(values: Mapping[str, Any]) -> dict[str, Any]:
    """The schedule's fields checked and normalised, or ScheduleInvalid naming each problem:
    a cron expression that cannot be read or never happens, an unknown zone, a run whose
    maximum cost is above SCHEDULES_MAX_RUN_COST_CENTS."""
    problems: dict[str, str] = {}
    cleaned = dict(values)
    if "cron" in values:
        try:
            cleaned["cron"] = cron.validate_cron(values["cron"])
        except cron.InvalidSchedule as exc:
            problems["cron"] = str(exc)
    if "timezone" in values:
        try:
            cron.zone_for(values["timezone"])
        except cron.InvalidSchedule as exc:
            problems["timezone"] = str(exc)
    if "max_steps" in values and "cua_version" in values:
        cost = run_max_cost_cents(cua_version=values["cua_version"], max_steps=values["max_steps"])
        cap = settings.SCHEDULES_MAX_RUN_COST_CENTS
        if cost > cap:
            problems["max_steps"] = (
                f"Each run of this schedule could cost up to {format_cents(cost)}, above the "
                f"{format_cents(cap)} a scheduled run may hold. Lower the maximum steps."
            )
    if problems:
        raise ScheduleInvalid(problems)
    return cleaned


def limits_check(*, team: Team, owner, cua_version: str, max_steps: int) -> None:
    """ScheduleInvalid when one run costs more than the team's monthly budget or the owner's
    monthly limit allows in a whole month: no occurrence of it could ever launch. (A wallet that
    is short now only warns, cost_warning: it can be topped up.)"""
    from billing.selectors import budget_status, member_month

    cost = run_max_cost_cents(cua_version=cua_version, max_steps=max_steps)
    budget = budget_status(team).monthly_limit_cents
    if budget is not None and cost > budget:
        raise ScheduleInvalid(
            {
                "max_steps": f"Each run of this schedule could cost up to {format_cents(cost)}, "
                f"above {team.name}'s whole monthly budget of {format_cents(budget)}: none "
                "could ever launch. Lower the maximum steps, or ask a manager to raise the budget."
            }
        )
    limit = member_month(team, owner).limit_cents if owner is not None else None
    if limit is not None and cost > limit:
        raise ScheduleInvalid(
            {
                "max_steps": f"Each run of this schedule could cost up to {format_cents(cost)}, "
                f"above the schedule owner's monthly limit of {format_cents(limit)}: none could "
                "ever launch. Lower the maximum steps, or ask a manager to raise the limit."
            }
        )


def cost_warning(*, team: Team, cua_version: str, max_steps: int) -> str:
    """A warning (not an error) when the wallet cannot cover one run now: the schedule is
    saved, and its occurrences are skipped until the wallet is topped up."""
    from billing.selectors import wallet_summary

    cost = run_max_cost_cents(cua_version=cua_version, max_steps=max_steps)
    available = wallet_summary(team).available_cents
    if cost <= available:
        return ""
    return (
        f"Each run can cost up to {format_cents(cost)} and {team.name}'s wallet has "
        f"{format_cents(available)} available now: runs are skipped until it is topped up."
    )


def may_edit(membership: Membership | None, schedule: Schedule) -> bool:
    """Members change their own schedules; managers any of the team's."""
    if membership is None or not membership.has_role(Role.MEMBER):
        return False
    return membership.has_role(Role.MANAGER) or schedule.created_by_id == membership.user_id


# --- Creating and changing ----------------------------------------------------------------------


def schedule_create(*, team: Team, user, values: Mapping[str, Any]) -> Schedule:
    """A new schedule owned by `user`; its runs launch as them."""
    values = schedule_validate(values)
    limits_check(
        team=team,
        owner=user,
        cua_version=values.get("cua_version", Schedule._meta.get_field("cua_version").default),
        max_steps=values.get("max_steps", Schedule._meta.get_field("max_steps").default),
    )
    schedule = Schedule(team=team, created_by=user)
    for name in SCHEDULE_FIELDS:
        if name in values:
            setattr(schedule, name, values[name])
    now = timezone.now()
    _restart_clock(schedule, now)
    schedule.save()
    logger.info("schedule %s created by %s in %s", schedule.pk, user, team.slug)
    return schedule


def schedule_update(*, schedule: Schedule, values: Mapping[str, Any]) -> Schedule:
    """Change some fields. A new cron, zone or a resume starts the clock again from now:
    occurrences that passed while paused are not caught up."""
    template_changed = "max_steps" in values or "cua_version" in values
    values = schedule_validate(
        {
            **{n: getattr(schedule, n) for n in ("cua_version", "max_steps")},
            **values,
        }
    )
    if template_changed:  # a pause, a rename or a new time never fails on a limit set since
        limits_check(
            team=schedule.team,
            owner=schedule.created_by,
            cua_version=values["cua_version"],
            max_steps=values["max_steps"],
        )
    with transaction.atomic():
        locked = Schedule.objects.select_for_update().get(pk=schedule.pk)
        clock_changed = any(
            name in values and values[name] != getattr(locked, name)
            for name in ("cron", "timezone", "enabled")
        )
        for name in SCHEDULE_FIELDS:
            if name in values:
                setattr(locked, name, values[name])
        if clock_changed:
            _restart_clock(locked, timezone.now())
        locked.save()
    return locked


def schedule_set_enabled(*, schedule: Schedule, enabled: bool) -> Schedule:
    return schedule_update(schedule=schedule, values={"enabled": enabled})


def schedule_delete(*, schedule: Schedule) -> None:
    """Delete the schedule and its history; its runs stay (and keep its id)."""
    schedule.delete()


def _restart_clock(schedule: Schedule, now: dt.datetime) -> None:
    if schedule.enabled:
        schedule.next_occurrence_at = cron.next_occurrence(
            schedule.cron, schedule.timezone, after=now
        )
        schedule.enabled_at = now
        schedule.paused_reason = ""
    else:
        schedule.next_occurrence_at = None


# --- The tick -------------------------------------------------------------------------------------


def schedules_tick(
    *, now: dt.datetime | None = None, budget_seconds: float | None = None
) -> dict[str, int]:
    """Deal with every due schedule, for at most `budget_seconds` (then the next tick goes on).

    Safe to run in any number of workers at once: each schedule is dealt with under its row
    lock, and each occurrence at most once ever.
    """
    budget = settings.SCHEDULES_TICK_BUDGET_SECONDS if budget_seconds is None else budget_seconds
    started = time.monotonic()
    counts: Counter[str] = Counter()
    while time.monotonic() - started < budget:
        at = now or timezone.now()
        due = list(
            Schedule.objects.filter(enabled=True, next_occurrence_at__lte=at)
            .order_by("next_occurrence_at")
            .values_list("pk", flat=True)[:200]
        )
        if not due:
            break
        progressed = False
        for schedule_id in due:
            try:
                outcome = schedule_occurrence_handle(schedule_id=schedule_id, now=at)
            except DatabaseError:
                # Rolled back whole: this occurrence is still due and the next tick tries
                # again. The other due schedules go on.
                logger.exception("schedule %s: the tick failed; retried next tick", schedule_id)
                outcome = "error"
            counts[outcome] += 1
            progressed = progressed or outcome not in ("busy", "error")
            if time.monotonic() - started >= budget:
                break
        if not progressed:
            break  # every due schedule is in another tick's hands
    return dict(counts)


def schedule_occurrence_handle(*, schedule_id: uuid.UUID, now: dt.datetime) -> str:
    """Deal with what fell due of one schedule by `now`, in one transaction.

    Returns what happened: "launched", "skipped", "paused", "duplicate" (the occurrence was
    dealt with before), "busy" (another tick holds the schedule) or "not_due". A database
    error rolls everything back and is raised: the occurrence stays due.
    """
    with transaction.atomic():
        schedule = _lock_due(schedule_id, now)
        if schedule is None:
            return "busy" if _is_due(schedule_id, now) else "not_due"
        assert schedule.next_occurrence_at is not None
        due = cron.due_between(
            schedule.cron, schedule.timezone, first=schedule.next_occurrence_at, now=now
        )
        schedule.next_occurrence_at = cron.next_occurrence(
            schedule.cron, schedule.timezone, after=now
        )
        if due is None:
            schedule.save(update_fields=["next_occurrence_at"])
            return "not_due"
        schedule.last_occurrence_at = due.latest

        if _pause_if_failing(schedule):
            return "paused"

        late = (now - due.latest).total_seconds() > settings.SCHEDULES_LATE_AFTER_SECONDS
        if late and schedule.catch_up == CatchUp.SKIP:
            outcome = _occurrence_skip(
                schedule,
                due.latest,
                reason=(
                    f"Missed: the portal was not running at that time "
                    f"({_missed_count(due)} missed); this schedule skips what it missed."
                ),
            )
        else:
            outcome = _occurrence_launch(schedule, due.latest)
        schedule.save(update_fields=["next_occurrence_at", "last_occurrence_at", "updated_at"])
        if outcome == "skipped":
            _pause_if_failing(schedule)
        return outcome


def _missed_count(due: cron.Due) -> str:
    return f"{due.count}{'+' if due.capped else ''} occurrence{'s' if due.count != 1 else ''}"


def _lock_due(schedule_id: uuid.UUID, now: dt.datetime) -> Schedule | None:
    rows = Schedule.objects.select_related("team", "created_by").filter(
        pk=schedule_id, enabled=True, next_occurrence_at__lte=now
    )
    if connection.features.has_select_for_update_skip_locked:
        # Another tick dealing with this schedule right now: leave it to them.
        rows = rows.select_for_update(skip_locked=True, of=("self",))
    return rows.first()


def _is_due(schedule_id: uuid.UUID, now: dt.datetime) -> bool:
    return Schedule.objects.filter(
        pk=schedule_id, enabled=True, next_occurrence_at__lte=now
    ).exists()


def launch_token_for(schedule_id: uuid.UUID, occurrence: dt.datetime) -> uuid.UUID:
    """The launch token of an occurrence's run: the same for every tick that reaches it."""
    instant = occurrence.astimezone(dt.UTC).isoformat()
    return uuid.uuid5(LAUNCH_TOKEN_NAMESPACE, f"schedule:{schedule_id}:{instant}")


def _claim(schedule: Schedule, occurrence: dt.datetime) -> ScheduleLaunch | None:
    """The occurrence's row, inserted now; None when another tick already recorded it."""
    try:
        with transaction.atomic():
            return ScheduleLaunch.objects.create(
                schedule=schedule, occurrence=occurrence, outcome=LaunchOutcome.LAUNCHED
            )
    except IntegrityError:
        return None


def _occurrence_launch(schedule: Schedule, occurrence: dt.datetime) -> str:
    claim = _claim(schedule, occurrence)
    if claim is None:
        return "duplicate"
    refusal = _owner_refusal(schedule)
    if refusal:
        return _record_skip(schedule, claim, refusal)
    request = LaunchRequest.from_fields({name: getattr(schedule, name) for name in TEMPLATE_FIELDS})
    try:
        # A savepoint: a refused launch rolls back its own writes and leaves ours standing.
        with transaction.atomic():
            run, _created = run_launch(
                team=schedule.team,
                user=schedule.created_by,
                request=request,
                launch_token=launch_token_for(schedule.pk, occurrence),
            )
            Run.objects.filter(pk=run.pk).update(schedule_id=schedule.pk)
    except DatabaseError:
        raise  # not a refusal: the whole occurrence rolls back and the next tick tries again
    except BillingError as exc:
        return _record_skip(schedule, claim, str(exc))
    except Exception as exc:
        # Whatever else the launch service refuses with (a budget, a member's limit): the
        # occurrence is skipped with its words, not retried every minute.
        logger.exception("schedule %s: launch refused: %r", schedule.pk, exc)
        return _record_skip(schedule, claim, f"The launch was refused: {exc}")
    claim.run = run
    claim.save(update_fields=["run"])
    logger.info("schedule %s launched run %s for %s", schedule.pk, run.pk, occurrence)
    return "launched"


def _owner_refusal(schedule: Schedule) -> str:
    owner = schedule.created_by
    if owner is None or not owner.is_active:
        return "The schedule's owner no longer has an account; a manager can take it over by editing it."
    membership = Membership.objects.filter(team=schedule.team, user=owner).first()
    if membership is None:
        return f"{owner.get_username()} is no longer in {schedule.team.name}, and runs launch as the schedule's owner."
    if not membership.has_role(Role.MEMBER):
        return f"{owner.get_username()} is now a viewer in {schedule.team.name} and may not launch runs."
    return ""


def _occurrence_skip(schedule: Schedule, occurrence: dt.datetime, *, reason: str) -> str:
    claim = _claim(schedule, occurrence)
    if claim is None:
        return "duplicate"
    return _record_skip(schedule, claim, reason)


def _record_skip(schedule: Schedule, claim: ScheduleLaunch, reason: str) -> str:
    claim.outcome = LaunchOutcome.SKIPPED
    claim.reason = reason
    claim.save(update_fields=["outcome", "reason"])
    occurrence_iso = claim.occurrence.astimezone(dt.UTC).isoformat()
    event_record(
        EventType.SCHEDULE_SKIPPED,
        team_id=schedule.team_id,
        subject=f"schedule:{schedule.pk}",
        key=f"schedule.skipped:{schedule.pk}:{occurrence_iso}",
        data={
            "schedule_id": str(schedule.pk),
            "name": schedule.name,
            "occurrence": occurrence_iso,
            "reason": reason,
            "url": schedule_url(schedule),
        },
        user_id=schedule.created_by_id,
    )
    logger.info("schedule %s skipped %s: %s", schedule.pk, occurrence_iso, reason)
    return "skipped"


def schedule_url(schedule: Schedule) -> str:
    path = reverse("schedule_detail", args=[schedule.team.slug, schedule.pk])
    return settings.PORTAL_PUBLIC_URL.rstrip("/") + path


def failure_streak(schedule: Schedule) -> tuple[int, str]:
    """How many of the latest occurrences in a row were skipped or ran and failed (counted
    since the schedule was last enabled), and the latest one's reason."""
    limit = settings.SCHEDULES_PAUSE_AFTER_FAILURES
    launches = ScheduleLaunch.objects.filter(schedule=schedule).select_related("run")
    if schedule.enabled_at is not None:
        launches = launches.filter(recorded_at__gte=schedule.enabled_at)
    streak, latest_reason = 0, ""
    for launch in launches.order_by("-occurrence")[:limit]:
        if launch.outcome == LaunchOutcome.SKIPPED:
            reason = launch.reason
        elif launch.run is not None and launch.run.status in FAILED_RUN_STATUSES:
            reason = f"the run ended {launch.run.get_status_display().lower()}"
        else:
            break
        streak += 1
        latest_reason = latest_reason or reason
    return streak, latest_reason


def _pause_if_failing(schedule: Schedule) -> bool:
    limit = settings.SCHEDULES_PAUSE_AFTER_FAILURES
    if limit <= 0:
        return False
    streak, reason = failure_streak(schedule)
    if streak < limit:
        return False
    schedule.enabled = False
    schedule.next_occurrence_at = None
    schedule.paused_reason = (
        f"Paused itself on {timezone.now():%Y-%m-%d %H:%M} UTC after {streak} occurrences in a "
        f"row were skipped or failed. The latest: {reason.rstrip('.')}. Resume it once that is fixed."
    )
    schedule.save(
        update_fields=[
            "enabled",
            "next_occurrence_at",
            "last_occurrence_at",
            "paused_reason",
            "updated_at",
        ]
    )
    logger.warning("schedule %s paused itself: %s", schedule.pk, reason)
    return True
