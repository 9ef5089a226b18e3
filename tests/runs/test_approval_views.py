"""The pages of spend controls on the runs side: the launch form's budget and limit messages
and cost box, and approve/reject on the run page for eligible managers only."""

import uuid

import pytest
from django.urls import reverse

from billing.services import budget_set, member_limit_set
from runs import services
from runs.models import Run, RunStatus
from runs.services import LaunchRequest
from tests.factories import top_up
from tests.runs.test_views import LAUNCH_FORM

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(team, make_member):
    top_up(team, 5000)
    return {
        "bob": make_member(team, "member", username="bob"),
        "alice": make_member(team, "manager", username="alice"),
        "mary": make_member(team, "manager", username="mary"),
        "victor": make_member(team, "viewer", username="victor"),
    }


def controls(team, *, limit=None, approval=None):
    budget_set(
        team=team,
        monthly_limit_cents=limit,
        approval_above_cents=approval,
        alert_percents=[],
        caused_by="command:tests",
    )


def launch_form(client, **overrides):
    return client.post(
        reverse("run_launch", args=["research"]),
        {**LAUNCH_FORM, "launch_token": str(uuid.uuid4()), **overrides},
    )


def test_over_the_budget_the_form_says_what_is_left_and_creates_nothing(team, people, client_for):
    controls(team, limit=30)
    response = launch_form(client_for(people["bob"]))
    body = response.content.decode()
    assert response.status_code == 400
    assert "monthly budget" in body and "$0.30" in body
    assert Run.objects.count() == 0


def test_over_the_member_limit_the_form_says_so(team, people, client_for):
    member_limit_set(team=team, user=people["bob"], monthly_limit_cents=20, caused_by="t")
    response = launch_form(client_for(people["bob"]))
    body = response.content.decode()
    assert response.status_code == 400
    assert "your monthly limit" in body and "$0.20" in body
    assert Run.objects.count() == 0


def test_the_cost_box_shows_what_remains_of_budget_and_limit(team, people, client_for):
    controls(team, limit=1000)
    member_limit_set(team=team, user=people["bob"], monthly_limit_cents=500, caused_by="t")
    launch_form(client_for(people["bob"]))  # 50 cents held
    body = client_for(people["bob"]).get(reverse("run_launch", args=["research"])).content
    body = body.decode()
    assert 'id="budget-left">$9.50 of $10.00' in body
    assert 'id="limit-left">$4.50 left ($0.50 of $5.00 used)' in body


def waiting_run(team, people):
    controls(team, approval=10)
    run, _ = services.run_launch(
        team=team,
        user=people["bob"],
        request=LaunchRequest(machine_id="vm-linux-1", task="Big job", max_steps=10),
    )
    assert run.status == RunStatus.AWAITING_APPROVAL
    return run


def test_the_form_tells_the_launcher_the_run_waits_for_approval(team, people, client_for):
    controls(team, approval=10)
    response = launch_form(client_for(people["bob"]))
    assert response.status_code == 302
    assert Run.objects.get().status == RunStatus.AWAITING_APPROVAL


@pytest.mark.parametrize(("who", "buttons"), [("alice", True), ("bob", False), ("victor", False)])
def test_only_an_eligible_manager_sees_the_buttons(team, people, client_for, who, buttons):
    run = waiting_run(team, people)
    body = client_for(people[who]).get(reverse("run_detail", args=[run.pk])).content.decode()
    assert "Waits for a manager" in body
    assert ('id="approve-run"' in body) is buttons
    assert ('id="reject-run"' in body) is buttons


def test_a_manager_approves_from_the_run_page(team, people, client_for):
    run = waiting_run(team, people)
    client = client_for(people["alice"])
    for _ in range(2):
        response = client.post(reverse("run_approve", args=[run.pk]))
        assert response.status_code == 302
    run.refresh_from_db()
    assert run.status == RunStatus.PENDING and run.decided_by == people["alice"]
    body = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert "Approved by alice" in body


def test_a_manager_rejects_with_a_reason_and_the_page_shows_it(team, people, client_for):
    run = waiting_run(team, people)
    client = client_for(people["mary"])
    client.post(reverse("run_reject", args=[run.pk]), {"reason": "Too big for now"})
    run.refresh_from_db()
    assert run.status == RunStatus.REJECTED
    body = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert "Rejected by mary" in body and "Too big for now" in body


@pytest.mark.parametrize(("who", "status"), [("bob", 403), ("victor", 403)])
def test_members_and_viewers_are_refused(team, people, client_for, who, status):
    run = waiting_run(team, people)
    response = client_for(people[who]).post(reverse("run_approve", args=[run.pk]))
    assert response.status_code == status
    assert Run.objects.get(pk=run.pk).status == RunStatus.AWAITING_APPROVAL


def test_the_launcher_manager_is_told_another_must_decide(team, people, client_for):
    controls(team, approval=10)
    run, _ = services.run_launch(
        team=team,
        user=people["alice"],
        request=LaunchRequest(machine_id="vm-linux-1", task="Mine", max_steps=10),
    )
    client = client_for(people["alice"])
    response = client.post(reverse("run_approve", args=[run.pk]), follow=True)
    assert "another manager" in response.content.decode()
    assert Run.objects.get(pk=run.pk).status == RunStatus.AWAITING_APPROVAL


def test_the_dashboard_points_at_runs_that_wait_for_approval(team, people, client_for):
    run = waiting_run(team, people)
    body = client_for(people["alice"]).get(reverse("team_dashboard", args=["research"]))
    body = body.content.decode()
    assert 'id="approvals-banner"' in body and reverse("run_detail", args=[run.pk]) in body
