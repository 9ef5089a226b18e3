"""The spend-control endpoints: a team's budget (GET members and billing admins, PUT managers
and billing admins), members' limits (PUT managers), and the 402s a launch meets."""

import pytest

from billing.models import Hold, MemberLimit
from billing.months import month_label, month_of
from runs.models import Run
from tests.api_world import LAUNCH_BODY, RUNS_URL, error_of

pytestmark = pytest.mark.django_db

BUDGET_URL = "/api/v1/teams/research/budget/"
BUDGET = {"monthly_limit_cents": 1000, "approval_above_cents": 500, "alert_percents": [80, 50]}


def limit_url(username):
    return f"/api/v1/teams/research/members/{username}/limit/"


def test_a_new_team_has_no_budget_and_its_month_so_far(world, bob):
    body = bob.get(BUDGET_URL).json()
    assert body == {
        "monthly_limit_cents": None,
        "approval_above_cents": None,
        "alert_percents": [],
        "month": month_label(month_of()),
        "month_spent_cents": 0,
        "month_held_cents": 50,  # the world's run holds 10 steps x 5 cents
        "month_remaining_cents": None,
    }


def test_a_manager_sets_the_budget_and_members_read_it(world, api_client_for, bob):
    response = api_client_for(world.manager).put(BUDGET_URL, BUDGET, format="json")
    assert response.status_code == 200, response.content
    body = bob.get(BUDGET_URL).json()
    assert body["monthly_limit_cents"] == 1000
    assert body["approval_above_cents"] == 500
    assert body["alert_percents"] == [50, 80]
    assert body["month_remaining_cents"] == 950


@pytest.mark.parametrize(
    ("caller", "status"), [("member", 403), ("viewer", 403), ("outsider", 404)]
)
def test_only_managers_and_billing_admins_set_it(world, api_client_for, caller, status):
    response = api_client_for(getattr(world, caller)).put(BUDGET_URL, BUDGET, format="json")
    error_of(response, status)
    assert api_client_for(world.manager).get(BUDGET_URL).json()["monthly_limit_cents"] is None


def test_a_billing_admin_reads_and_sets_any_teams_budget(world, api_client_for):
    client = api_client_for(world.billing_admin)
    assert client.put(BUDGET_URL, BUDGET, format="json").status_code == 200
    assert client.get(BUDGET_URL).json()["monthly_limit_cents"] == 1000


@pytest.mark.parametrize(
    "body",
    [
        {"monthly_limit_cents": -1},
        {"monthly_limit_cents": "10"},
        {"monthly_limit_cents": 100, "alert_percents": [0]},
        {"monthly_limit_cents": 100, "alert_percents": [101]},
        {"monthly_limit_cents": 100, "surprise": 1},
        {},
    ],
)
def test_bad_budgets_are_400(world, api_client_for, body):
    error = error_of(api_client_for(world.manager).put(BUDGET_URL, body, format="json"), 400)
    assert error["code"] == "VALIDATION_ERROR"


def test_a_launch_over_the_budget_is_402_budget_exceeded_and_creates_nothing(
    world, api_client_for, bob
):
    api_client_for(world.manager).put(
        BUDGET_URL, {"monthly_limit_cents": 80, "approval_above_cents": None}, format="json"
    )
    runs, holds = Run.objects.count(), Hold.objects.count()
    error = error_of(bob.post(RUNS_URL, LAUNCH_BODY, format="json"), 402)
    assert error["code"] == "BUDGET_EXCEEDED"
    assert "$0.30" in error["message"]  # what is left this month
    assert (Run.objects.count(), Hold.objects.count()) == (runs, holds)


def test_a_member_limit_is_402_member_limit_exceeded(world, api_client_for, bob):
    manager = api_client_for(world.manager)
    response = manager.put(
        limit_url(world.member.username), {"monthly_limit_cents": 60}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["month_used_cents"] == 50
    error = error_of(bob.post(RUNS_URL, LAUNCH_BODY, format="json"), 402)
    assert error["code"] == "MEMBER_LIMIT_EXCEEDED"
    # the manager is not limited
    assert manager.post(RUNS_URL, LAUNCH_BODY, format="json").status_code == 201
    # null removes the limit
    manager.put(limit_url(world.member.username), {"monthly_limit_cents": None}, format="json")
    assert not MemberLimit.objects.exists()
    assert bob.post(RUNS_URL, LAUNCH_BODY, format="json").status_code == 201


@pytest.mark.parametrize(
    ("caller", "status"), [("member", 403), ("viewer", 403), ("outsider", 404)]
)
def test_only_managers_set_member_limits(world, api_client_for, caller, status):
    response = api_client_for(getattr(world, caller)).put(
        limit_url(world.member.username), {"monthly_limit_cents": 10}, format="json"
    )
    error_of(response, status)
    assert not MemberLimit.objects.exists()


def test_a_limit_for_someone_not_in_the_team_is_404(world, api_client_for):
    response = api_client_for(world.manager).put(
        limit_url(world.outsider.username), {"monthly_limit_cents": 10}, format="json"
    )
    assert error_of(response, 404)["code"] == "NOT_FOUND"
