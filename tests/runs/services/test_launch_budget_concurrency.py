"""Fifty people launching at once against a monthly budget that fits exactly fifteen runs:
exactly fifteen runs, on PostgreSQL (row locks and guarded updates) and on SQLite (whose
IMMEDIATE transactions serialise the writers)."""

from unittest import mock

import pytest

from billing.errors import BudgetExceeded, MemberLimitExceeded
from billing.invariants import ledger_problems
from billing.models import Hold, MonthUsage
from billing.services import budget_set, member_limit_set
from portal.notifications.models import EventType, OutboxEvent
from runs import services
from runs.models import Run, RunStatus
from runs.services import LaunchRequest
from tests.billing.services.test_concurrency import at_once
from tests.factories import MembershipFactory, TeamFactory, UserFactory, top_up

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_fifty_launches_against_a_budget_for_fifteen_make_exactly_fifteen_runs():
    # given a rich team whose budget fits exactly fifteen 10-step runs (50 cents each)
    team = TeamFactory()
    top_up(team, 100_000)
    budget_set(
        team=team,
        monthly_limit_cents=15 * 50,
        approval_above_cents=None,
        alert_percents=[50, 80, 100],
        caused_by="command:tests",
    )
    people = [UserFactory() for _ in range(50)]
    for person in people:
        MembershipFactory(team=team, user=person)
    request = LaunchRequest(machine_id="vm-linux-1", task="Export leads", max_steps=10)
    # when fifty members launch at the same moment
    results, errors = at_once(
        50, lambda i: services.run_launch(team=team, user=people[i], request=request)
    )
    # then exactly fifteen runs exist, the other 35 were refused by the budget, nothing leaked
    assert len(results) == 15
    assert len(errors) == 35
    assert all(isinstance(error, BudgetExceeded) for error in errors.values())
    assert Run.objects.filter(team=team).count() == 15
    assert Hold.objects.filter(team=team).count() == 15
    assert MonthUsage.objects.get(team=team, user=None).used_cents == 750
    # and each alert fired once, however many launches crossed it at once
    thresholds = OutboxEvent.objects.filter(team=team, type=EventType.BUDGET_THRESHOLD)
    assert sorted(event.data["percent"] for event in thresholds) == [50, 80, 100]
    assert ledger_problems() == []


def test_twenty_launches_of_one_member_against_a_limit_for_five_make_five():
    team = TeamFactory()
    top_up(team, 100_000)
    intern = UserFactory()
    MembershipFactory(team=team, user=intern)
    member_limit_set(team=team, user=intern, monthly_limit_cents=5 * 50, caused_by="t")
    request = LaunchRequest(machine_id="vm-linux-1", task="Export leads", max_steps=10)
    results, errors = at_once(
        20, lambda i: services.run_launch(team=team, user=intern, request=request)
    )
    assert len(results) == 5
    assert all(isinstance(error, MemberLimitExceeded) for error in errors.values())
    assert len(errors) == 15
    assert MonthUsage.objects.get(team=team, user=intern).used_cents == 250
    # the refused launches gave the team's month back what they had counted in it
    assert MonthUsage.objects.get(team=team, user=None).used_cents == 250
    assert ledger_problems() == []


def test_ten_managers_approving_at_once_submit_once():
    team = TeamFactory()
    top_up(team, 100_000)
    budget_set(
        team=team,
        monthly_limit_cents=None,
        approval_above_cents=0,
        alert_percents=[],
        caused_by="t",
    )
    launcher = UserFactory()
    MembershipFactory(team=team, user=launcher)
    managers = [UserFactory() for _ in range(10)]
    for manager in managers:
        MembershipFactory(team=team, user=manager, role="manager")
    run, _ = services.run_launch(
        team=team,
        user=launcher,
        request=LaunchRequest(machine_id="vm-linux-1", task="Big", max_steps=10),
    )
    with mock.patch("runs.services.approval.enqueue_on_commit") as enqueue:
        _results, errors = at_once(10, lambda i: services.run_approve(run=run, user=managers[i]))
    assert errors == {}
    assert enqueue.call_count == 1  # one submit, whoever won
    run.refresh_from_db()
    assert run.status == RunStatus.PENDING and run.decided_by in managers
