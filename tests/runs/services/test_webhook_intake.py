"""The webhook endpoint: what Coasty's deliveries do, and what forged, stale or repeated ones
cannot do. The intake is one transaction per delivery (services.webhook_receive); these tests
pin its verdicts and its statement budget."""

import json
import time
import uuid

import pytest
from django.urls import reverse

from portal.core.crypto import encrypt_secret
from runs.coasty import signature_header
from runs.models import Run, RunStatus, WebhookDelivery
from runs.services import webhooks
from tests.factories import TeamFactory
from tests.runs.support import queued_tasks

pytestmark = pytest.mark.django_db

SECRET = "whsec_test_secret_123"


@pytest.fixture
def run():
    team = TeamFactory()
    run_id = uuid.uuid4()
    return Run.objects.create(
        id=run_id,
        team=team,
        machine_id="vm-linux-1",
        task="Export leads",
        price_cents=5,
        held_cents=50,
        idempotency_key=f"portal-run-{run_id}",
        upstream_id="run_abc",
        webhook_secret_encrypted=encrypt_secret(SECRET),
        status=RunStatus.RUNNING,
    )


def body_for(run, event="run.awaiting_human", **extra):
    status = {"run.awaiting_human": "awaiting_human", "run.succeeded": "succeeded"}[event]
    payload = {
        "event": event,
        "run_id": run.upstream_id,
        "status": status,
        "result": None,
        "error": None,
        "awaiting_human_reason": "captcha" if status == "awaiting_human" else None,
        "created_at": "2026-11-28T10:00:00Z",
        **extra,
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def deliver(client, run, body, *, secret=SECRET, t=None, header=None, run_id=None):
    t = int(time.time()) if t is None else t
    return client.post(
        reverse("coasty_webhook", args=[run_id or run.pk]),
        body,
        content_type="application/json",
        HTTP_COASTY_SIGNATURE=header if header is not None else signature_header(secret, t, body),
    )


def verdicts(run):
    return list(
        WebhookDelivery.objects.filter(run=run).order_by("id").values_list("verdict", flat=True)
    )


def test_a_signed_delivery_is_applied_and_recorded(client, run):
    # when Coasty says the run needs a human
    response = deliver(client, run, body_for(run))
    # then the run waits for one, and the delivery is stored as accepted with what it did
    assert response.status_code == 200
    run.refresh_from_db()
    assert (run.status, run.awaiting_human_reason) == ("awaiting_human", "captcha")
    delivery = WebhookDelivery.objects.get(run=run)
    assert delivery.verdict == "accepted"
    assert delivery.event == "run.awaiting_human"
    assert "running → awaiting_human" in delivery.result
    assert bytes(delivery.body) == body_for(run)
    assert delivery.headers["Coasty-Signature"].startswith("t=")


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_a_nul_in_a_signed_body_never_reaches_the_run(client, run, encoding):
    # given a signed body whose reason carries a NUL (PostgreSQL's text refuses it), escaped
    # in UTF-8 or raw in a UTF-16 body (JSON allows both encodings; the byte scan must not
    # miss the second)
    text = body_for(run).decode().replace('"captcha"', '"cap\\u0000tcha"')
    body = text.encode(encoding)
    # when it is delivered
    response = deliver(client, run, body)
    # then it is applied with the NUL replaced, and the body is kept as it came
    assert response.status_code == 200, response.content
    run.refresh_from_db()
    assert (run.status, run.awaiting_human_reason) == ("awaiting_human", "cap\ufffdtcha")
    assert bytes(WebhookDelivery.objects.get(run=run).body) == body


def test_the_same_body_again_is_a_duplicate_that_changes_nothing(client, run):
    # given a delivery that was applied, then a resume moved the run on
    deliver(client, run, body_for(run))
    Run.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING)
    # when Coasty delivers the same body again (a retry), signed afresh
    response = deliver(client, run, body_for(run))
    # then it is answered 200 and recorded as a duplicate, and the run stays where it is
    assert response.status_code == 200
    assert response.json()["message"] == "duplicate"
    assert verdicts(run) == ["accepted", "duplicate"]
    run.refresh_from_db()
    assert run.status == "running"


@pytest.mark.parametrize(
    ("how", "status", "verdict"),
    [
        ({"secret": "whsec_forged"}, 401, "bad_signature"),
        ({"t": int(time.time()) - 301}, 400, "stale"),
        ({"header": "v1=nothing"}, 400, "malformed"),
        ({"header": ""}, 400, "malformed"),
    ],
)
def test_forged_stale_and_malformed_signatures_are_refused_and_kept(
    client, run, how, status, verdict
):
    # when a delivery arrives that does not prove it is Coasty's, now
    response = deliver(client, run, body_for(run, "run.succeeded"), **how)
    # then it is refused, recorded for operators, and changes nothing
    assert response.status_code == status
    assert verdicts(run) == [verdict]
    run.refresh_from_db()
    assert run.status == "running"


def test_a_refused_delivery_does_not_block_the_real_one(client, run):
    # given a forged copy of a body arrived first
    deliver(client, run, body_for(run, "run.succeeded"), secret="whsec_forged")
    # when the real one arrives
    response = deliver(client, run, body_for(run, "run.succeeded"))
    # then it is applied
    assert response.status_code == 200
    assert verdicts(run) == ["bad_signature", "accepted"]


def test_a_body_for_another_run_is_refused(client, run):
    body = body_for(run, run_id="run_someone_else")
    response = deliver(client, run, body)
    assert response.status_code == 400
    assert verdicts(run) == ["malformed"]


def test_a_body_that_is_not_json_is_refused(client, run):
    response = deliver(client, run, b"not json")
    assert response.status_code == 400
    assert verdicts(run) == ["malformed"]


def test_an_unknown_run_is_404_and_stores_nothing(client, run):
    response = deliver(client, run, body_for(run), run_id=uuid.uuid4())
    assert response.status_code == 404
    assert not WebhookDelivery.objects.exists()


def test_a_run_not_yet_accepted_here_answers_404_so_coasty_retries(client, run):
    # given Coasty's answer to the submit has not been stored yet (no secret)
    Run.objects.filter(pk=run.pk).update(webhook_secret_encrypted="")
    # when its delivery arrives, then it is answered like an unknown run (Coasty retries it
    # until the secret is stored), and nothing is kept
    response = deliver(client, run, body_for(run))
    assert response.status_code == 404
    assert verdicts(run) == []
    # when the secret is stored and Coasty retries, then the delivery is applied
    Run.objects.filter(pk=run.pk).update(webhook_secret_encrypted=encrypt_secret(SECRET))
    assert deliver(client, run, body_for(run)).status_code == 200
    assert verdicts(run) == ["accepted"]


def test_a_terminal_delivery_enqueues_the_settle_after_commit(
    client, run, django_capture_on_commit_callbacks, monkeypatch
):
    with django_capture_on_commit_callbacks(execute=True):
        response = deliver(client, run, body_for(run, "run.succeeded"))
    assert response.status_code == 200
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert queued_tasks("runs.") == [("runs.tasks.settle_run", str(run.pk))]


def test_a_failure_while_applying_is_recorded_and_a_redelivery_is_applied(client, run, monkeypatch):
    # given applying fails once
    real = webhooks._webhook_apply

    def broken(*args, **kwargs):
        raise RuntimeError("database hiccup")

    monkeypatch.setattr(webhooks, "_webhook_apply", broken)
    response = deliver(client, run, body_for(run))
    # then Coasty is asked to redeliver, the failure is on record, and nothing was applied
    assert response.status_code == 500
    assert verdicts(run) == ["failed"]
    run.refresh_from_db()
    assert run.status == "running"
    # when Coasty redelivers the same body
    monkeypatch.setattr(webhooks, "_webhook_apply", real)
    response = deliver(client, run, body_for(run))
    # then it is applied (the failed attempt did not take the body's dedupe key)
    assert response.status_code == 200
    assert verdicts(run) == ["failed", "accepted"]


def test_an_accepted_delivery_is_one_short_transaction(client, run, django_assert_max_num_queries):
    # read the secret (no lock), then lock the run, store the delivery, move the status, record
    # the pause in the notification outbox and queue its fan-out in the same transaction (the
    # ORM broker: no commit of its own), plus the test's savepoint pair
    with django_assert_max_num_queries(8):
        response = deliver(client, run, body_for(run))
    assert response.status_code == 200
