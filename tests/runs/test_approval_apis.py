"""Approve and reject over the API: who may, what each answers, and that repeating is safe."""

import pytest

from billing.services import budget_set
from runs.models import RunStatus
from tests.api_world import LAUNCH_BODY, RUNS_URL, error_of
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def waiting(world, bob):
    budget_set(
        team=world.team,
        monthly_limit_cents=None,
        approval_above_cents=10,
        alert_percents=[],
        caused_by="command:tests",
    )
    response = bob.post(RUNS_URL, LAUNCH_BODY, format="json")
    assert response.status_code == 201
    run = response.json()
    assert run["status"] == "awaiting_approval"
    return run


def test_a_manager_approves_once(world, api_client_for, waiting):
    client = api_client_for(world.manager)
    url = f"/api/v1/runs/{waiting['id']}/approve/"
    first = client.post(url)
    again = client.post(url)
    assert first.status_code == again.status_code == 200
    assert first.json()["status"] == again.json()["status"] == RunStatus.PENDING
    assert first.json()["decided_by"] == world.manager.username
    assert first.json()["decided_at"] is not None


def test_a_manager_rejects_with_a_reason(world, api_client_for, waiting):
    client = api_client_for(world.manager)
    url = f"/api/v1/runs/{waiting['id']}/reject/"
    assert error_of(client.post(url, {}, format="json"), 400)["code"] == "VALIDATION_ERROR"
    response = client.post(url, {"reason": "Use fewer steps"}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "rejected"
    assert response.json()["decision_reason"] == "Use fewer steps"
    # and it cannot be approved after
    error = error_of(client.post(f"/api/v1/runs/{waiting['id']}/approve/"), 409)
    assert error["code"] == "INVALID_STATE"


@pytest.mark.parametrize(
    ("caller", "status"), [("member", 403), ("viewer", 403), ("outsider", 404)]
)
def test_others_cannot_decide(world, api_client_for, waiting, caller, status):
    client = api_client_for(getattr(world, caller))
    error_of(client.post(f"/api/v1/runs/{waiting['id']}/approve/"), status)
    error_of(client.post(f"/api/v1/runs/{waiting['id']}/reject/", {"reason": "x"}), status)


def test_a_manager_cannot_approve_their_own_launch(world, api_client_for):
    budget_set(
        team=world.team,
        monthly_limit_cents=None,
        approval_above_cents=10,
        alert_percents=[],
        caused_by="command:tests",
    )
    client = api_client_for(world.manager)
    run = client.post(RUNS_URL, LAUNCH_BODY, format="json").json()
    error = error_of(client.post(f"/api/v1/runs/{run['id']}/approve/"), 403)
    assert error["code"] == "PERMISSION_DENIED"
    other = UserFactory(username="second-manager")
    MembershipFactory(team=world.team, user=other, role="manager")
    assert api_client_for(other).post(f"/api/v1/runs/{run['id']}/approve/").status_code == 200


def test_approving_a_run_that_never_waited_is_409(world, api_client_for):
    error = error_of(
        api_client_for(world.manager).post(f"/api/v1/runs/{world.run.pk}/approve/"), 409
    )
    assert error["code"] == "INVALID_STATE"
