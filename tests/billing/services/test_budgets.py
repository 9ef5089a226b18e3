"""Monthly budgets, alert thresholds and member limits, counted in the hold's transaction."""

import datetime as dt
import uuid
from unittest import mock

import pytest
from django.utils import timezone

from billing import services
from billing.errors import BudgetExceeded, InsufficientFunds, InvalidAmount, MemberLimitExceeded
from billing.invariants import ledger_problems
from billing.models import Hold, MonthUsage, Transfer
from billing.months import month_of
from portal.notifications.models import EventType, OutboxEvent
from tests.factories import TeamFactory, UserFactory, top_up

pytestmark = pytest.mark.django_db


def hold(team, cents, by="command:tests"):
    run_id = uuid.uuid4()
    return services.hold_place(
        team=team, amount_cents=cents, reference=f"run:{run_id}", run_id=run_id, caused_by=by
    )


def team_used(team, month=None):
    row = MonthUsage.objects.filter(team=team, user=None, month=month or month_of()).first()
    return row.used_cents if row else 0


def set_budget(team, limit, *, approval=None, alerts=()):
    return services.budget_set(
        team=team,
        monthly_limit_cents=limit,
        approval_above_cents=approval,
        alert_percents=list(alerts),
        caused_by="command:tests",
    )


def at(year, month, day, hour=12):
    return dt.datetime(year, month, day, hour, tzinfo=dt.UTC)


def test_a_hold_that_fits_the_budget_counts_whole_against_the_month():
    team = TeamFactory()
    top_up(team, 10_000)
    set_budget(team, 1_000)
    hold(team, 600)
    assert team_used(team) == 600


def test_a_hold_over_the_budget_is_refused_with_what_is_left_and_writes_nothing():
    team = TeamFactory()
    top_up(team, 10_000)
    set_budget(team, 1_000)
    hold(team, 600)
    with pytest.raises(BudgetExceeded) as refused:
        hold(team, 500)
    assert refused.value.remaining_cents == 400
    assert "$4.00" in str(refused.value)
    assert Hold.objects.filter(team=team).count() == 1
    assert Transfer.objects.filter(team=team, kind="hold").count() == 1
    assert team_used(team) == 600


def test_the_budget_is_checked_before_the_wallet_and_either_refusal_leaves_nothing():
    team = TeamFactory()
    top_up(team, 300)
    set_budget(team, 1_000)
    with pytest.raises(InsufficientFunds):
        hold(team, 500)
    assert team_used(team) == 0
    assert not Hold.objects.filter(team=team).exists()


def test_released_cents_come_back_and_captured_cents_stay():
    team = TeamFactory()
    top_up(team, 10_000)
    set_budget(team, 1_000)
    first = hold(team, 1_000)
    services.hold_capture(reference=first.reference, step=1, amount_cents=5, caused_by="t")
    services.hold_release(reference=first.reference, caused_by="t")
    assert team_used(team) == 5
    hold(team, 995)  # exactly what is left fits
    with pytest.raises(BudgetExceeded):
        hold(team, 1)


def test_releasing_twice_gives_back_once():
    team = TeamFactory()
    top_up(team, 10_000)
    set_budget(team, 1_000)
    first = hold(team, 800)
    services.hold_release(reference=first.reference, caused_by="t")
    services.hold_release(reference=first.reference, caused_by="t")
    assert team_used(team) == 0
    assert ledger_problems() == []


def test_placing_the_same_hold_again_counts_it_once():
    team = TeamFactory()
    top_up(team, 10_000)
    set_budget(team, 1_000)
    run_id = uuid.uuid4()
    for _ in range(2):
        services.hold_place(
            team=team, amount_cents=700, reference=f"run:{run_id}", run_id=run_id, caused_by="t"
        )
    assert team_used(team) == 700


def test_no_budget_still_counts_the_month_so_a_budget_set_later_sees_it():
    team = TeamFactory()
    top_up(team, 10_000)
    hold(team, 700)
    set_budget(team, 1_000)
    with pytest.raises(BudgetExceeded):
        hold(team, 400)


def test_a_hold_placed_in_november_counts_in_november_when_captured_and_released_in_december():
    team = TeamFactory()
    top_up(team, 10_000)
    set_budget(team, 1_000)
    with mock.patch("django.utils.timezone.now", return_value=at(2026, 11, 30, 23)):
        placed = hold(team, 1_000)
    with mock.patch("django.utils.timezone.now", return_value=at(2026, 12, 1, 1)):
        services.hold_capture(reference=placed.reference, step=1, amount_cents=5, caused_by="t")
        services.hold_release(reference=placed.reference, caused_by="t")
        # December starts empty: the whole budget is there
        december = hold(team, 1_000)
    assert team_used(team, dt.date(2026, 11, 1)) == 5
    assert team_used(team, dt.date(2026, 12, 1)) == 1_000
    assert december.team_usage.month == dt.date(2026, 12, 1)
    assert ledger_problems() == []


def test_the_month_follows_time_zone_not_utc(settings):
    settings.TIME_ZONE = "America/New_York"
    # 03:00 UTC on 1 December is still 30 November in New York
    assert month_of(at(2026, 12, 1, 3)) == dt.date(2026, 11, 1)
    assert month_of(at(2026, 12, 1, 6)) == dt.date(2026, 12, 1)


def test_member_limit_refuses_that_member_only():
    team = TeamFactory()
    top_up(team, 10_000)
    intern, other = UserFactory(), UserFactory()
    services.member_limit_set(team=team, user=intern, monthly_limit_cents=500, caused_by="t")
    hold(team, 400, by=intern)
    with pytest.raises(MemberLimitExceeded) as refused:
        hold(team, 200, by=intern)
    assert refused.value.remaining_cents == 100
    hold(team, 2_000, by=other)
    assert team_used(team) == 2_400
    assert not Hold.objects.filter(amount_cents=200).exists()


def test_a_member_refusal_gives_the_team_row_back():
    team = TeamFactory()
    top_up(team, 10_000)
    intern = UserFactory()
    services.member_limit_set(team=team, user=intern, monthly_limit_cents=100, caused_by="t")
    with pytest.raises(MemberLimitExceeded):
        hold(team, 200, by=intern)
    assert team_used(team) == 0


def test_removing_a_member_limit_lets_them_launch_again():
    team = TeamFactory()
    top_up(team, 10_000)
    intern = UserFactory()
    services.member_limit_set(team=team, user=intern, monthly_limit_cents=100, caused_by="t")
    services.member_limit_set(team=team, user=intern, monthly_limit_cents=None, caused_by="t")
    hold(team, 200, by=intern)


def test_each_alert_threshold_fires_once_per_month():
    team = TeamFactory()
    top_up(team, 100_000)
    set_budget(team, 1_000, alerts=[50, 80, 100])
    first = hold(team, 600)  # crosses 50
    hold(team, 300)  # crosses 80
    services.hold_release(reference=first.reference, caused_by="t")  # back to 300
    hold(team, 600)  # 900: crosses 50 and 80 again, which fired already
    hold(team, 100)  # 1000: crosses 100
    events = OutboxEvent.objects.filter(type=EventType.BUDGET_THRESHOLD, team=team)
    assert sorted(e.data["percent"] for e in events) == [50, 80, 100]
    month = f"{timezone.now():%Y-%m}"
    assert {e.key for e in events} == {
        f"budget.threshold:{team.pk}:{month}:{p}" for p in (50, 80, 100)
    }


def test_alerts_fire_again_next_month():
    team = TeamFactory()
    top_up(team, 100_000)
    set_budget(team, 1_000, alerts=[50])
    with mock.patch("django.utils.timezone.now", return_value=at(2026, 11, 10)):
        hold(team, 600)
    with mock.patch("django.utils.timezone.now", return_value=at(2026, 12, 10)):
        hold(team, 600)
    assert OutboxEvent.objects.filter(type=EventType.BUDGET_THRESHOLD).count() == 2


@pytest.mark.parametrize(
    ("limit", "approval", "alerts"),
    [(-1, None, []), (None, -5, []), (100, None, [0]), (100, None, [101]), (True, None, [])],
)
def test_bad_budget_values_are_refused(limit, approval, alerts):
    team = TeamFactory()
    with pytest.raises(InvalidAmount):
        set_budget(team, limit, approval=approval, alerts=alerts)


def test_a_broken_month_row_is_reported_by_check_ledger():
    team = TeamFactory()
    top_up(team, 10_000)
    hold(team, 100)
    MonthUsage.objects.filter(team=team, user=None).update(used_cents=5)
    assert any("Month usage" in problem for problem in ledger_problems())
    MonthUsage.objects.filter(team=team, user=None).update(used_cents=100)


def test_holds_of_this_month_placed_before_the_upgrade_are_counted_by_the_backfill():
    import importlib

    from django.apps import apps

    backfill = importlib.import_module("billing.migrations.0006_month_usage_backfill").backfill
    team = TeamFactory()
    top_up(team, 10_000)
    bob = UserFactory()
    placed = hold(team, 300, by=bob)
    hold(team, 200)
    # as if both had been placed before month rows existed
    Hold.objects.filter(team=team).update(team_usage=None, member_usage=None)
    MonthUsage.objects.filter(team=team).delete()
    services.hold_capture(reference=placed.reference, step=1, amount_cents=5, caused_by="t")
    backfill(apps, None)
    assert team_used(team) == 500
    assert MonthUsage.objects.get(team=team, user=bob).used_cents == 300
    assert ledger_problems() == []
