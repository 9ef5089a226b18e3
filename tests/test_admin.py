"""Operators' admin: every model's pages render, history is read-only, runs are searchable."""

import pytest
from django.contrib import admin
from django.urls import reverse

from runs import services
from runs.crypto import encrypt_secret
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
