"""Billing admins follow money to what spent it: they read every team's dashboard, runs list and
run pages, and act on none of them unless they are members; anyone else outside still gets 404."""

import uuid

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from runs import services
from runs.models import PendingAction, Run, RunStatus
from runs.services import LaunchRequest
from tests.factories import top_up

pytestmark = pytest.mark.django_db


@pytest.fixture
def paused_run(team, make_member):
    top_up(team, 5000)
    bob = make_member(team, "member", username="bob")
    run, _ = services.run_launch(
        team=team,
        user=bob,
        request=LaunchRequest(machine_id="vm-linux-1", task="Reconcile March", max_steps=10),
    )
    Run.objects.filter(pk=run.pk).update(
        status=RunStatus.AWAITING_HUMAN, upstream_id="up-1", awaiting_human_reason="captcha"
    )
    return run


READ_PAGES = [
    ("team_dashboard", "team"),
    ("run_list", "team"),
    ("run_detail", "run"),
    ("run_live", "run"),
]


def _url(name, kind, run):
    return reverse(name, args=[run.team.slug] if kind == "team" else [run.pk])


@pytest.mark.parametrize(("name", "kind"), READ_PAGES)
def test_billing_admin_reads_every_team_page(client_for, billing_admin, paused_run, name, kind):
    # given a billing admin who belongs to no team
    # when they open one of the team's pages
    response = client_for(billing_admin).get(_url(name, kind, paused_run))

    # then they read it, with no action offered
    assert response.status_code == 200
    body = response.content.decode()
    assert "Launch a run" not in body
    assert 'id="cancel-run"' not in body
    assert ">Resume<" not in body


@pytest.mark.parametrize(("name", "kind"), READ_PAGES)
def test_an_outsider_still_gets_404(client_for, make_member, other_team, paused_run, name, kind):
    outsider = make_member(other_team, "manager", username="carol")

    response = client_for(outsider).get(_url(name, kind, paused_run))

    assert response.status_code == 404


@pytest.mark.parametrize("action", ["run_cancel", "run_resume"])
def test_billing_admin_cannot_act_on_a_run(client_for, billing_admin, paused_run, action):
    # when a billing admin posts an action
    response = client_for(billing_admin).post(reverse(action, args=[paused_run.pk]), {"note": "x"})

    # then it is refused, saying why, and nothing is asked of the run
    assert response.status_code == 403
    assert "billing admin" in response.content.decode()
    assert Run.objects.get(pk=paused_run.pk).pending_action == PendingAction.NONE


def test_billing_admin_cannot_launch(client_for, billing_admin, paused_run):
    url = reverse("run_launch", args=[paused_run.team.slug])

    get = client_for(billing_admin).get(url)
    post = client_for(billing_admin).post(
        url, {"machine_id": "vm-1", "task": "x", "max_steps": "1", "launch_token": uuid.uuid4()}
    )

    assert get.status_code == 403
    assert post.status_code == 403
    assert Run.objects.count() == 1


def test_billing_admin_who_is_a_member_acts_as_one(client_for, make_member, paused_run):
    # given a billing admin who is also a member of the team
    admin = make_member(paused_run.team, "member", username="treasurer-member")
    admin.user_permissions.add(Permission.objects.get(codename="manage_wallets"))

    # when they cancel
    response = client_for(admin).post(reverse("run_cancel", args=[paused_run.pk]))

    # then the cancel is requested
    assert response.status_code == 302
    assert Run.objects.get(pk=paused_run.pk).pending_action == PendingAction.CANCEL


def test_billing_admin_starts_at_the_billing_overview(client_for, billing_admin, paused_run):
    response = client_for(billing_admin).get("/")

    assert response.status_code == 302
    assert response["Location"] == reverse("billing_overview")
    overview = client_for(billing_admin).get(reverse("billing_overview")).content.decode()
    assert reverse("run_list", args=[paused_run.team.slug]) in overview


def test_run_link_from_the_ledger_opens_for_billing_admin(client_for, billing_admin, paused_run):
    # given the team's ledger, which links the run's hold
    ledger = client_for(billing_admin).get(reverse("wallet", args=[paused_run.team.slug]))
    link = f"/runs/{paused_run.pk}/"
    assert link in ledger.content.decode()

    # when the billing admin follows it, then the run page opens
    assert client_for(billing_admin).get(link).status_code == 200


def test_the_teams_page_lists_every_team_for_a_billing_admin(
    client_for, billing_admin, paused_run, make_member, other_team
):
    # given a billing admin in no team, and an ordinary member of one team
    page = client_for(billing_admin).get(reverse("team_list")).content.decode()
    # then their Teams page leads to every team's dashboard, not "not in a team yet"
    assert "not in a team yet" not in page
    for team in (paused_run.team, other_team):
        assert reverse("team_dashboard", args=[team.slug]) in page
    # and a member who is no billing admin sees only their own team
    member = make_member(other_team, "member", username="olga")
    own = client_for(member).get(reverse("team_list")).content.decode()
    assert reverse("team_dashboard", args=[other_team.slug]) in own
    assert reverse("team_dashboard", args=[paused_run.team.slug]) not in own
