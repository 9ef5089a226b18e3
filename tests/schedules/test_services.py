"""The tick (schedules/services.py): each occurrence launches at most one run, through the
same launch service as a person, in the schedule's zone, daylight saving and downtime
included; what cannot launch is recorded as skipped, told, and pauses the schedule in time."""

import datetime as dt

import pytest
from django.test import override_settings

from billing.selectors import wallet_summary
from portal.notifications.models import OutboxEvent
from portal.teams.models import Membership
from runs.models import Run, RunStatus
from schedules import services
from schedules.models import LaunchOutcome, ScheduleLaunch
from tests.schedules.conftest import utc

pytestmark = pytest.mark.django_db


def tick_every(minutes, start, end):
    at = start
    while at <= end:
        services.schedules_tick(now=at)
        at += dt.timedelta(minutes=minutes)


def test_an_occurrence_launches_one_run_as_the_owner_and_the_run_names_its_schedule(
    make_schedule, owner, funded
):
    # given an hourly schedule whose clock started at 08:10
    schedule = make_schedule("0 * * * *", start=utc(2026, 5, 4, 8, 10))

    # when the tick comes at 09:00:20, and again, and once more
    first = services.schedules_tick(now=utc(2026, 5, 4, 9, 0, 20))
    services.schedules_tick(now=utc(2026, 5, 4, 9, 0, 20))
    services.schedules_tick(now=utc(2026, 5, 4, 9, 0, 50))

    # then one run was launched, as bob, holding its maximum cost, and it records the schedule
    assert first == {"launched": 1}
    run = Run.objects.get()
    assert run.created_by == owner and run.schedule_id == schedule.pk
    assert (run.task, run.max_steps, run.held_cents) == ("Export the new leads", 10, 50)
    assert wallet_summary(funded).held_cents == 50
    launch = ScheduleLaunch.objects.get()
    assert (launch.occurrence, launch.outcome, launch.run) == (
        utc(2026, 5, 4, 9),
        LaunchOutcome.LAUNCHED,
        run,
    )
    schedule.refresh_from_db()
    assert schedule.next_occurrence_at == utc(2026, 5, 4, 10)


def test_a_tick_whose_clock_stepped_back_or_replays_an_occurrence_launches_nothing(make_schedule):
    # given 09:00 was launched
    schedule = make_schedule("0 9 * * *", start=utc(2026, 5, 4, 8))
    services.schedules_tick(now=utc(2026, 5, 4, 9, 0, 30))
    # when a worker's clock steps back, and a stale worker believes 09:00 is still next
    assert services.schedules_tick(now=utc(2026, 5, 4, 8, 59)) == {}
    type(schedule).objects.filter(pk=schedule.pk).update(next_occurrence_at=utc(2026, 5, 4, 9))
    outcome = services.schedules_tick(now=utc(2026, 5, 4, 9, 1))
    # then the occurrence's row is found taken: still one run
    assert outcome == {"duplicate": 1}
    assert Run.objects.count() == 1 and ScheduleLaunch.objects.count() == 1


@pytest.mark.parametrize(
    ("zone", "expression", "day_start", "launched_at"),
    [
        # spring forward: 02:30 does not exist that night; it runs once, at 03:00 local
        ("Europe/Berlin", "30 2 * * *", utc(2026, 3, 28, 22), utc(2026, 3, 29, 1, 0)),
        ("America/New_York", "30 2 * * *", utc(2026, 3, 8, 4), utc(2026, 3, 8, 7, 0)),
        # fall back: 02:30 (Berlin), 01:30 (New York) happen twice; each runs once, the first time
        ("Europe/Berlin", "30 2 * * *", utc(2026, 10, 24, 22), utc(2026, 10, 25, 0, 30)),
        ("America/New_York", "30 1 * * *", utc(2026, 11, 1, 4), utc(2026, 11, 1, 5, 30)),
        ("America/New_York", "30 2 * * *", utc(2026, 11, 1, 4), utc(2026, 11, 1, 7, 30)),
    ],
)
def test_a_daily_run_on_a_daylight_saving_day_launches_once(
    make_schedule, zone, expression, day_start, launched_at
):
    # given a daily schedule in the zone, its clock started the evening before
    make_schedule(expression, zone, start=day_start - dt.timedelta(hours=3))

    # when the tick runs every two minutes through the whole local day
    tick_every(2, day_start, day_start + dt.timedelta(hours=24) - dt.timedelta(minutes=1))

    # then exactly one run launched that day, at the expected instant
    assert list(ScheduleLaunch.objects.values_list("occurrence", "outcome")) == [
        (launched_at, LaunchOutcome.LAUNCHED)
    ]
    assert Run.objects.count() == 1


def test_downtime_with_catch_up_skip_records_the_missed_time_and_tells(make_schedule, owner):
    # given an hourly schedule that launched 08:00, then the portal was down until 11:20
    schedule = make_schedule("0 * * * *", start=utc(2026, 5, 4, 7, 30), catch_up="skip")
    services.schedules_tick(now=utc(2026, 5, 4, 8, 0, 30))

    # when the first tick after the outage runs
    assert services.schedules_tick(now=utc(2026, 5, 4, 11, 20)) == {"skipped": 1}

    # then nothing launched for the missed hours: the latest (11:00) is recorded as skipped
    launches = list(ScheduleLaunch.objects.order_by("occurrence"))
    assert [(x.occurrence.hour, x.outcome) for x in launches] == [(8, "launched"), (11, "skipped")]
    assert "portal was not running" in launches[1].reason and "3 occurrences" in launches[1].reason
    event = OutboxEvent.objects.get(type="schedule.skipped")
    assert event.key == f"schedule.skipped:{schedule.pk}:2026-05-04T11:00:00+00:00"
    assert event.user == owner and event.subject == f"schedule:{schedule.pk}"
    assert (
        event.data["schedule_id"] == str(schedule.pk) and event.data["reason"] == launches[1].reason
    )
    assert event.data["url"].endswith(f"/teams/research/schedules/{schedule.pk}/")
    # and the schedule carries on at 12:00
    services.schedules_tick(now=utc(2026, 5, 4, 12, 0, 30))
    assert Run.objects.count() == 2


def test_downtime_with_catch_up_once_launches_the_latest_missed_time_only(make_schedule):
    make_schedule("0 * * * *", start=utc(2026, 5, 4, 7, 30), catch_up="once")
    services.schedules_tick(now=utc(2026, 5, 4, 8, 0, 30))

    assert services.schedules_tick(now=utc(2026, 5, 4, 11, 20)) == {"launched": 1}
    services.schedules_tick(now=utc(2026, 5, 4, 11, 21))

    launches = ScheduleLaunch.objects.order_by("occurrence")
    assert [(x.occurrence.hour, x.outcome) for x in launches] == [(8, "launched"), (11, "launched")]
    assert Run.objects.count() == 2


@pytest.mark.parametrize("catch_up", ["skip", "once"])
def test_an_on_time_occurrence_after_downtime_launches_whatever_the_policy(make_schedule, catch_up):
    make_schedule("0 * * * *", start=utc(2026, 5, 4, 7, 30), catch_up=catch_up)
    assert services.schedules_tick(now=utc(2026, 5, 4, 11, 1)) == {"launched": 1}
    assert ScheduleLaunch.objects.get().occurrence == utc(2026, 5, 4, 11)


@override_settings(SCHEDULES_PAUSE_AFTER_FAILURES=3)
def test_a_wallet_that_cannot_pay_skips_with_the_reason_and_pauses_the_schedule_after_three(
    make_schedule, funded
):
    # given a schedule whose runs can cost $10 each, and $50 in the wallet... minus most of it
    schedule = make_schedule("0 * * * *", start=utc(2026, 5, 4, 7, 30), max_steps=200)
    from tests.factories import place_hold

    place_hold(funded, 4950)

    # when three hourly ticks come
    for hour in (8, 9, 10):
        services.schedules_tick(now=utc(2026, 5, 4, hour, 0, 30))

    # then each was skipped with billing's words, told once each, and the schedule paused itself
    launches = list(ScheduleLaunch.objects.order_by("occurrence"))
    assert [x.outcome for x in launches] == ["skipped"] * 3
    assert all("Insufficient funds" in x.reason for x in launches)
    assert OutboxEvent.objects.filter(type="schedule.skipped").count() == 3
    schedule.refresh_from_db()
    assert not schedule.enabled and schedule.next_occurrence_at is None
    assert "after 3 occurrences in a row were skipped or failed" in schedule.paused_reason
    assert "Insufficient funds" in schedule.paused_reason
    # and a paused schedule launches nothing
    assert services.schedules_tick(now=utc(2026, 5, 4, 11, 0, 30)) == {}
    assert Run.objects.count() == 0


@override_settings(SCHEDULES_PAUSE_AFTER_FAILURES=2)
def test_failed_runs_count_towards_pausing_and_a_resume_starts_counting_again(make_schedule):
    schedule = make_schedule("0 * * * *", start=utc(2026, 5, 4, 7, 30))
    for hour in (8, 9):
        services.schedules_tick(now=utc(2026, 5, 4, hour, 0, 30))
        Run.objects.filter(schedule_id=schedule.pk).update(status=RunStatus.FAILED)

    # the 10:00 tick finds two failed runs in a row: it pauses instead of launching a third
    assert services.schedules_tick(now=utc(2026, 5, 4, 10, 0, 30)) == {"paused": 1}
    schedule.refresh_from_db()
    assert not schedule.enabled and "the run ended failed" in schedule.paused_reason

    # a person resumes it: the old failures no longer count
    schedule = services.schedule_set_enabled(schedule=schedule, enabled=True)
    assert schedule.enabled and schedule.paused_reason == ""
    type(schedule).objects.filter(pk=schedule.pk).update(next_occurrence_at=utc(2026, 5, 4, 11))
    assert services.schedules_tick(now=utc(2026, 5, 4, 11, 0, 30)) == {"launched": 1}


def test_an_owner_who_left_the_team_is_a_skip_with_the_reason(make_schedule, owner, funded):
    make_schedule("0 * * * *", start=utc(2026, 5, 4, 7, 30))
    Membership.objects.filter(user=owner).delete()

    assert services.schedules_tick(now=utc(2026, 5, 4, 8, 0, 30)) == {"skipped": 1}
    assert "bob is no longer in Research" in ScheduleLaunch.objects.get().reason
    assert Run.objects.count() == 0


def test_any_other_launch_refusal_is_a_skip_with_its_words(make_schedule, monkeypatch):
    # given the launch service refuses for a reason of its own (a budget, say)
    class BudgetExceeded(Exception):
        pass

    def refuse(**kwargs):
        raise BudgetExceeded("The team's monthly budget of $10.00 is spent.")

    monkeypatch.setattr(services, "run_launch", refuse)
    make_schedule("0 * * * *", start=utc(2026, 5, 4, 7, 30))

    assert services.schedules_tick(now=utc(2026, 5, 4, 8, 0, 30)) == {"skipped": 1}
    assert "monthly budget of $10.00 is spent" in ScheduleLaunch.objects.get().reason


def _spend_controls(team, *, budget=None, approval_above=None):
    from billing.services import budget_set

    budget_set(
        team=team,
        monthly_limit_cents=budget,
        approval_above_cents=approval_above,
        alert_percents=[],
        caused_by="command:tests",
    )


def test_a_scheduled_launch_past_the_teams_budget_is_a_skip_saying_what_is_left(
    make_schedule, funded
):
    # given a budget with 30 cents left this month, and a schedule whose runs hold 50
    _spend_controls(funded, budget=30)
    make_schedule("0 * * * *", start=utc(2026, 5, 4, 7, 30))
    # when its occurrence comes
    assert services.schedules_tick(now=utc(2026, 5, 4, 8, 0, 30)) == {"skipped": 1}
    # then it is skipped with the budget's own words, nothing held, and the team is told
    skip = ScheduleLaunch.objects.get()
    assert "budget" in skip.reason and "$0.30" in skip.reason, skip.reason
    assert Run.objects.count() == 0 and wallet_summary(funded).held_cents == 0
    assert OutboxEvent.objects.filter(type="schedule.skipped").count() == 1


def test_a_scheduled_launch_past_the_owners_member_limit_is_a_skip(make_schedule, funded, owner):
    from billing.services import member_limit_set

    member_limit_set(team=funded, user=owner, monthly_limit_cents=40, caused_by="command:tests")
    make_schedule("0 * * * *", start=utc(2026, 5, 4, 7, 30))
    assert services.schedules_tick(now=utc(2026, 5, 4, 8, 0, 30)) == {"skipped": 1}
    assert "limit" in ScheduleLaunch.objects.get().reason
    assert Run.objects.count() == 0 and wallet_summary(funded).held_cents == 0


def test_a_scheduled_launch_above_the_approval_threshold_waits_for_a_manager(make_schedule, funded):
    # given runs above 10 cents need a manager's approval
    _spend_controls(funded, approval_above=10)
    schedule = make_schedule("0 * * * *", start=utc(2026, 5, 4, 7, 30))
    # when the occurrence comes
    assert services.schedules_tick(now=utc(2026, 5, 4, 8, 0, 30)) == {"launched": 1}
    # then its run waits for approval holding its money, like any launch, and names the schedule
    run = Run.objects.get()
    assert run.status == RunStatus.AWAITING_APPROVAL and run.schedule_id == schedule.pk
    assert wallet_summary(funded).held_cents == 50


def test_a_template_no_month_could_pay_for_is_refused_when_saved(funded, owner):
    from billing.services import member_limit_set

    values = {"name": "n", "cron": "0 9 * * *", "timezone": "UTC", "machine_id": "vm",
              "task": "t", "cua_version": "v5", "max_steps": 20}  # fmt: skip
    # given a monthly budget of 80 cents: a run that may cost $1.00 could never launch
    _spend_controls(funded, budget=80)
    with pytest.raises(services.ScheduleInvalid) as refused:
        services.schedule_create(team=funded, user=owner, values=values)
    assert "whole monthly budget of $0.80" in refused.value.fields["max_steps"]
    # and within it, but above the owner's own limit of 60 cents, likewise
    _spend_controls(funded, budget=10000)
    member_limit_set(team=funded, user=owner, monthly_limit_cents=60, caused_by="command:tests")
    with pytest.raises(services.ScheduleInvalid) as refused:
        services.schedule_create(team=funded, user=owner, values=values)
    assert "monthly limit of $0.60" in refused.value.fields["max_steps"]
    # and a template within both is saved; a limit lowered later does not block pausing it
    schedule = services.schedule_create(team=funded, user=owner, values={**values, "max_steps": 5})
    member_limit_set(team=funded, user=owner, monthly_limit_cents=10, caused_by="command:tests")
    assert services.schedule_set_enabled(schedule=schedule, enabled=False).enabled is False


def test_creating_and_changing_validate_and_restart_the_clock(funded, owner):
    schedule = services.schedule_create(
        team=funded,
        user=owner,
        values={
            "name": "n",
            "cron": "0  9 * * 1-5",
            "timezone": "Europe/Berlin",
            **{
                "machine_id": "vm",
                "task": "t",
                "cua_version": "v5",
                "max_steps": 5,
            },
        },
    )
    assert schedule.cron == "0 9 * * 1-5" and schedule.next_occurrence_at is not None

    with pytest.raises(services.ScheduleInvalid) as refused:
        services.schedule_update(
            schedule=schedule, values={"cron": "0 0 31 2 *", "timezone": "Nowhere/Town"}
        )
    assert set(refused.value.fields) == {"cron", "timezone"}

    with (
        override_settings(SCHEDULES_MAX_RUN_COST_CENTS=1000),
        pytest.raises(services.ScheduleInvalid) as refused,
    ):
        services.schedule_update(schedule=schedule, values={"max_steps": 500})
    assert (
        "could cost up to $25.00, above the $10.00 a scheduled run may hold"
        in (refused.value.fields["max_steps"])
    )

    paused = services.schedule_set_enabled(schedule=schedule, enabled=False)
    assert paused.next_occurrence_at is None


def test_a_template_above_the_wallet_is_a_warning_not_an_error(funded):
    assert services.cost_warning(team=funded, cua_version="v5", max_steps=10) == ""
    warning = services.cost_warning(team=funded, cua_version="v1", max_steps=1000)
    assert "can cost up to $80.00" in warning and "$50.00 available" in warning


def test_a_database_error_leaves_the_occurrence_due_and_the_other_schedules_go_on(
    make_schedule, monkeypatch
):
    from django.db import OperationalError

    # given two due schedules, and a database that fails the first launch once
    broken = make_schedule("0 * * * *", start=utc(2026, 5, 4, 7, 30), name="a")
    make_schedule("0 * * * *", start=utc(2026, 5, 4, 7, 30), name="b")
    real_launch, failures = services.run_launch, []

    def flaky(**kwargs):
        if not failures:
            failures.append(1)
            raise OperationalError("server closed the connection unexpectedly")
        return real_launch(**kwargs)

    monkeypatch.setattr(services, "run_launch", flaky)

    # when the tick runs, then again
    first = services.schedules_tick(now=utc(2026, 5, 4, 8, 0, 30))
    second = services.schedules_tick(now=utc(2026, 5, 4, 8, 1))

    # then the failed occurrence was rolled back whole, still due, and launched once after
    assert first == {"error": 1, "launched": 2} and second == {}
    assert ScheduleLaunch.objects.filter(schedule=broken).count() == 1
    assert Run.objects.count() == 2
