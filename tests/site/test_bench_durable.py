"""`make bench`'s durable-minimum view (PORTAL_BENCH_ENDPOINTS only): it verifies a delivery's
signature as the real intake does and stores it with one INSERT, so the intake's limit is one
a durable intake can reach."""

import json
import time
import uuid

import pytest
from django.test import RequestFactory

from portal.core.crypto import encrypt_secret
from portal.site import views
from runs.coasty import signature_header
from runs.models import Run, RunStatus, WebhookDelivery
from tests.factories import TeamFactory

pytestmark = pytest.mark.django_db

SECRET = "whsec_bench_durable_secret"


@pytest.fixture
def run():
    run_id = uuid.uuid4()
    return Run.objects.create(
        id=run_id,
        team=TeamFactory(),
        machine_id="vm-linux-1",
        task="Export leads",
        price_cents=5,
        held_cents=50,
        idempotency_key=f"portal-run-{run_id}",
        upstream_id="run_durable",
        webhook_secret_encrypted=encrypt_secret(SECRET),
        status=RunStatus.RUNNING,
    )


def post(run_id, body: bytes, secret: str = SECRET):
    request = RequestFactory().post(
        f"/bench/durable/{run_id}/",
        data=body,
        content_type="application/json",
        HTTP_COASTY_SIGNATURE=signature_header(secret, int(time.time()), body),
    )
    return views.bench_durable(request, run_id)


BODY = json.dumps({"event": "run.awaiting_human", "run_id": "run_durable"}).encode()


def test_a_signed_delivery_is_stored_once_and_moves_nothing(run, django_assert_num_queries):
    with django_assert_num_queries(2):  # the secret's read, the delivery's INSERT
        response = post(run.pk, BODY)
    assert response.status_code == 200
    stored = WebhookDelivery.objects.get(run=run)
    assert bytes(stored.body) == BODY
    assert stored.result == views.BENCH_DURABLE_RESULT
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING


def test_a_forged_or_unknown_delivery_stores_nothing(run):
    assert post(run.pk, BODY, secret="whsec_someone_else").status_code == 401
    assert post(uuid.uuid4(), BODY).status_code == 404
    assert not WebhookDelivery.objects.exists()


def test_the_view_is_not_served_without_bench_endpoints(client, run):
    assert (
        client.post(f"/bench/durable/{run.pk}/", BODY, content_type="application/json").status_code
        == 404
    )
    assert not WebhookDelivery.objects.exists()
