"""Fifty people launching at once against a monthly budget that fits exactly fifteen runs:
exactly fifteen runs, on PostgreSQL (row locks and guarded updates) and on SQLite (whose
IMMEDIATE transactions serialise the writers)."""

import pytest

from billing.errors import BudgetExceeded
from billing.invariants import ledger_problems
from billing.models import Hold, MonthUsage
from billing.services import budget_set
from runs import services
from runs.models import Run
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
    assert ledger_problems() == []
