"""Operators' admin: every model's pages render, history is read-only, runs are searchable."""

import pytest
from django.contrib import admin
from django.urls import reverse

from portal.core.crypto import encrypt_secret
from portal.teams.models import Membership, MembershipChange, Role
from runs import services
from runs.models import Run, RunEvent, RunStatus, WebhookDelivery
from runs.services import IncomingEvent, LaunchRequest
from tests.factories import UserFactory, top_up

pytestmark = pytest.mark.django_db

SECRET = "whsec_admin_must_not_show_1"


@pytest.fixture
def operator_client(client):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def run(team, make_member):
    top_up(team, 1000)
    run, _ = services.run_launch(
        team=team,
        user=make_member(team),
        request=LaunchRequest(machine_id="vm", task="find me", max_steps=2),
    )
    Run.objects.filter(pk=run.pk).update(
        upstream_id="up-xyz",
        status=RunStatus.RUNNING,
        webhook_secret_encrypted=encrypt_secret(SECRET),
    )
    services.events_ingest(
        run_id=run.pk, events=[IncomingEvent(1, "status", {"status": "running"})]
    )
    WebhookDelivery.objects.create(
        run=run, body=b"{}", body_sha256="0" * 64, verdict="bad_signature"
    )
    return Run.objects.get(pk=run.pk)


def test_every_registered_model_lists_and_opens(operator_client, run):
    for model in admin.site._registry:
        meta = model._meta
        listing = operator_client.get(
            reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        )
        assert listing.status_code == 200, meta.label
        first = model.objects.first()
        if first is not None:
            page = operator_client.get(
                reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[first.pk])
            )
            assert page.status_code == 200, meta.label


@pytest.mark.parametrize("query", ["up-xyz", "portal-run-"])
def test_runs_are_found_by_upstream_id_and_idempotency_key(operator_client, run, query):
    term = query if query == "up-xyz" else run.idempotency_key
    listing = operator_client.get(reverse("admin:runs_run_changelist"), {"q": term})
    assert str(run.pk) in listing.content.decode()


@pytest.mark.parametrize("model", [Run, RunEvent, WebhookDelivery])
def test_history_is_read_only(operator_client, run, model):
    meta = model._meta
    obj = model.objects.first()
    assert (
        operator_client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_add")).status_code
        == 403
    )
    assert (
        operator_client.post(
            reverse(f"admin:{meta.app_label}_{meta.model_name}_delete", args=[obj.pk]),
            {"post": "yes"},
        ).status_code
        == 403
    )
    assert model.objects.filter(pk=obj.pk).exists()


def test_the_webhook_secret_is_not_in_the_admin(operator_client, run):
    assert run.webhook_secret_encrypted  # a run with a secret, plain and encrypted
    for url in (
        reverse("admin:runs_run_change", args=[run.pk]),
        reverse("admin:runs_run_changelist"),
    ):
        response = operator_client.get(url)
        assert response.status_code == 200
        page = response.content.decode()
        assert str(run.pk) in page  # the run is on the page
        assert "webhook_secret" not in page
        assert SECRET not in page and run.webhook_secret_encrypted not in page


# --- Memberships: every change leaves an audit row, and a team keeps a manager -------------------


def test_memberships_cannot_be_deleted_outside_their_team(operator_client, team, make_member):
    # given two memberships, listed in the admin
    make_member(team, Role.MANAGER, username="alice")
    bob_membership = Membership.objects.get(user=make_member(team, Role.MEMBER, username="bob"))

    # when an operator opens the list, tries "Delete selected" on it, and the delete page of one
    listing = operator_client.get(reverse("admin:portal_membership_changelist"))
    operator_client.post(
        reverse("admin:portal_membership_changelist"),
        {
            "action": "delete_selected",
            "_selected_action": list(Membership.objects.values_list("pk", flat=True)),
            "post": "yes",
        },
    )
    delete_page = operator_client.post(
        reverse("admin:portal_membership_delete", args=[bob_membership.pk]), {"post": "yes"}
    )

    # then neither is offered or done: nobody leaves a team without a MembershipChange row
    assert listing.status_code == 200
    assert "delete_selected" not in listing.content.decode()
    assert delete_page.status_code == 403
    assert Membership.objects.count() == 2


def _team_form(team, roles, *, delete=()):
    """The admin's team change form, posted with the team's memberships at `roles`."""
    memberships = list(team.memberships.order_by("pk"))
    data = {
        "name": team.name,
        "slug": team.slug,
        "memberships-TOTAL_FORMS": str(len(memberships)),
        "memberships-INITIAL_FORMS": str(len(memberships)),
    }
    for i, membership in enumerate(memberships):
        username = membership.user.username
        data |= {
            f"memberships-{i}-id": str(membership.pk),
            f"memberships-{i}-team": str(team.pk),
            f"memberships-{i}-user": str(membership.user_id),
            f"memberships-{i}-role": roles.get(username, membership.role),
        }
        if username in delete:
            data[f"memberships-{i}-DELETE"] = "on"
    return data


@pytest.mark.parametrize(
    ("roles", "delete"),
    [({"alice": Role.MEMBER}, ()), ({}, ("alice",)), ({"alice": Role.VIEWER}, ("bob",))],
    ids=["demote", "remove", "demote-and-remove-another"],
)
def test_team_inline_cannot_leave_a_team_without_a_manager(
    roles, delete, operator_client, team, make_member
):
    # given a team with one manager, alice, and a member, bob
    make_member(team, Role.MANAGER, username="alice")
    make_member(team, Role.MEMBER, username="bob")

    # when an operator demotes or removes alice in the team's membership inline
    response = operator_client.post(
        reverse("admin:portal_team_change", args=[team.pk]),
        _team_form(team, roles, delete=delete),
    )

    # then the page says why, and nothing changed
    assert response.status_code == 200
    assert "A team needs at least one manager" in response.content.decode()
    assert dict(team.memberships.values_list("user__username", "role")) == {
        "alice": Role.MANAGER,
        "bob": Role.MEMBER,
    }
    assert not MembershipChange.objects.exists()


def test_team_inline_hands_the_manager_role_over_in_one_save(operator_client, team, make_member):
    # given a team with one manager, alice, and a member, bob
    make_member(team, Role.MANAGER, username="alice")
    make_member(team, Role.MEMBER, username="bob")

    # when an operator makes bob manager and removes alice in one save
    response = operator_client.post(
        reverse("admin:portal_team_change", args=[team.pk]),
        _team_form(team, {"bob": Role.MANAGER}, delete=("alice",)),
    )

    # then it is done, and recorded
    assert response.status_code == 302
    assert dict(team.memberships.values_list("user__username", "role")) == {"bob": Role.MANAGER}
    assert sorted(MembershipChange.objects.values_list("member_username", "action")) == [
        ("alice", MembershipChange.Action.REMOVED),
        ("bob", MembershipChange.Action.ROLE_CHANGED),
    ]
