"""Spend controls: a team's monthly budget, its alert thresholds, and members' monthly limits.

The arithmetic runs inside `hold_place`, in the hold's own transaction (`budget_count_hold`):
the team's month row, then the member's, each a guarded UPDATE (billing.locks), between the
hold's key and the accounts in the lock order. A release gives its cents back the same way
(`budget_give_back`). Months are calendar months in TIME_ZONE (billing.months); a hold counts in
the month it was placed, whenever it is captured or released.
"""

from __future__ import annotations

import datetime as dt
import math

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from billing.errors import BudgetExceeded, InvalidAmount, MemberLimitExceeded
from billing.locks import count_against_month, give_back_to_month
from billing.models import Budget, Hold, MemberLimit, MonthUsage
from billing.months import month_label
from billing.services.posting import CausedBy, cause
from portal.notifications.models import EventType
from portal.notifications.services import event_record
from portal.teams.models import Team

MAX_ALERTS = 10


def month_usage_rows(team_id: int, user_id: int | None, month: dt.date) -> tuple[int, int | None]:
    """The ids of the team's month row and (with a user) the member's, created on first use
    (idempotent under their unique constraints: a concurrent creator's row wins)."""

    def found() -> dict[int | None, int]:
        who = Q(user__isnull=True) if user_id is None else Q(user__isnull=True) | Q(user=user_id)
        rows = MonthUsage.objects.filter(who, team_id=team_id, month=month)
        return dict(rows.values_list("user_id", "pk"))

    ids = found()
    wanted = [None] if user_id is None else [None, user_id]
    missing = [who for who in wanted if who not in ids]
    if missing:
        MonthUsage.objects.bulk_create(
            [MonthUsage(team_id=team_id, user_id=who, month=month) for who in missing],
            ignore_conflicts=True,
        )
        ids = found()
    return ids[None], ids.get(user_id) if user_id is not None else None


def budget_count_hold(
    *,
    team_id: int,
    user_id: int | None,
    amount_cents: int,
    month: dt.date,
    team_usage_id: int,
    member_usage_id: int | None,
) -> None:
    """Count a new hold against its month, or refuse (BudgetExceeded, MemberLimitExceeded).

    Called by hold_place inside its transaction, after the hold and its key and before the
    accounts; a refusal raises and the caller's transaction writes nothing.
    """
    budget = (
        Budget.objects.filter(team_id=team_id)
        .values_list("monthly_limit_cents", "alert_percents")
        .first()
    )
    limit, percents = budget if budget is not None else (None, [])
    used = count_against_month(team_usage_id, amount_cents, limit_cents=limit)
    if used is None:
        assert limit is not None
        current = MonthUsage.objects.values_list("used_cents", flat=True).get(pk=team_usage_id)
        raise BudgetExceeded(
            limit_cents=limit,
            used_cents=current,
            needed_cents=amount_cents,
            month=month_label(month),
        )
    if member_usage_id is not None and user_id is not None:
        member_limit = (
            MemberLimit.objects.filter(team_id=team_id, user_id=user_id)
            .values_list("monthly_limit_cents", flat=True)
            .first()
        )
        if count_against_month(member_usage_id, amount_cents, limit_cents=member_limit) is None:
            assert member_limit is not None
            current = MonthUsage.objects.values_list("used_cents", flat=True).get(
                pk=member_usage_id
            )
            raise MemberLimitExceeded(
                limit_cents=member_limit,
                used_cents=current,
                needed_cents=amount_cents,
                month=month_label(month),
            )
    if limit:
        _threshold_alerts(team_id, month, limit, percents or [], used - amount_cents, used)


def _threshold_alerts(
    team_id: int, month: dt.date, limit: int, percents: list[int], before: int, after: int
) -> None:
    """One budget.threshold event per percent crossed, at most once per team, month and
    percent: the key names all three, so climbing past it again (after releases) adds none."""
    for percent in sorted(set(percents)):
        level = math.ceil(limit * percent / 100)
        if before < level <= after:
            event_record(
                EventType.BUDGET_THRESHOLD,
                team_id=team_id,
                subject=f"team:{team_id}",
                key=f"{EventType.BUDGET_THRESHOLD}:{team_id}:{month_label(month)}:{percent}",
                data={
                    "percent": percent,
                    "month": month_label(month),
                    "monthly_limit_cents": limit,
                    "month_used_cents": after,
                },
            )


def budget_give_back(hold: Hold, cents: int) -> None:
    """A hold released `cents`: they come back to the month it was placed in (team row first,
    then the member's, as placement takes them). The caller holds the hold's lock."""
    if cents <= 0 or hold.team_usage_id is None:
        return
    ids = [hold.team_usage_id]
    if hold.member_usage_id is not None:
        ids.append(hold.member_usage_id)
    give_back_to_month(ids, cents)


def _check_limit(value: int | None, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10**12:
        raise InvalidAmount(f"{what} is a whole number of cents from 0 to 10^12, or none.")
    return value


def _check_percents(values: list[int]) -> list[int]:
    if not isinstance(values, list | tuple):
        raise InvalidAmount("Alert percentages are a list of whole numbers from 1 to 100.")
    if len(values) > MAX_ALERTS:
        raise InvalidAmount(f"At most {MAX_ALERTS} alert percentages.")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
            raise InvalidAmount("Alert percentages are whole numbers from 1 to 100.")
    return sorted(set(values))


def budget_set(
    *,
    team: Team,
    monthly_limit_cents: int | None,
    approval_above_cents: int | None,
    alert_percents: list[int],
    caused_by: CausedBy,
) -> Budget:
    """Set the team's spend controls (None: no budget, no approval). Setting the same values
    again changes nothing but the time. A budget below what the month already uses refuses
    every new launch until holds are released or the month ends; nothing already held moves."""
    limit = _check_limit(monthly_limit_cents, "A monthly budget")
    approval = _check_limit(approval_above_cents, "An approval threshold")
    percents = _check_percents(alert_percents)
    _user, label = cause(caused_by)
    with transaction.atomic():
        budget, _ = Budget.objects.update_or_create(
            team=team,
            defaults={
                "monthly_limit_cents": limit,
                "approval_above_cents": approval,
                "alert_percents": percents,
                "updated_at": timezone.now(),
                "updated_by": label,
            },
        )
    return budget


def member_limit_set(
    *, team: Team, user, monthly_limit_cents: int | None, caused_by: CausedBy
) -> MemberLimit | None:
    """Set (or with None remove) a member's monthly limit in the team."""
    limit = _check_limit(monthly_limit_cents, "A monthly limit")
    _by, label = cause(caused_by)
    with transaction.atomic():
        if limit is None:
            MemberLimit.objects.filter(team=team, user=user).delete()
            return None
        row, _ = MemberLimit.objects.update_or_create(
            team=team,
            user=user,
            defaults={
                "monthly_limit_cents": limit,
                "updated_at": timezone.now(),
                "updated_by": label,
            },
        )
    return row
