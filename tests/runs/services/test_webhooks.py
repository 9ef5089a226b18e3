"""Webhook intake: forged, stale, tampered and duplicate deliveries change nothing."""

import json
import time
import uuid

import pytest
from django.urls import get_resolver, reverse

from billing.selectors import wallet_summary
from portal.core.crypto import encrypt_secret
from runs import services
from runs.coasty import signature_header
from runs.models import Run, RunStatus, WebhookDelivery
from runs.services import LaunchRequest
from tests.factories import top_up
from tests.runs.support import queued_tasks

pytestmark = pytest.mark.django_db

SECRET = "whsec_run_secret_1"


@pytest.fixture
def run(team, make_member):
    top_up(team, 5000)
    bob = make_member(team, "member")
    run, _ = services.run_launch(
        team=team, user=bob, request=LaunchRequest(machine_id="vm", task="t", max_steps=10)
    )
    Run.objects.filter(pk=run.pk).update(
        upstream_id="run_up_1",
        status=RunStatus.RUNNING,
        webhook_secret_encrypted=encrypt_secret(SECRET),
    )
    run.refresh_from_db()
    return run


def body_for(run, **fields):
    payload = {
        "event": "run.succeeded",
        "run_id": run.upstream_id,
        "status": "succeeded",
        "result": None,
        "error": None,
        "awaiting_human_reason": None,
        "created_at": "2026-11-28T10:00:00Z",
        **fields,
    }
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def deliver(client, run, body, *, secret=SECRET, t=None, header=None):
    t = int(time.time()) if t is None else t
    return client.post(
        reverse("coasty_webhook", args=[run.pk]),
        data=body,
        content_type="application/json",
        headers={
            "Coasty-Signature": header if header is not None else signature_header(secret, t, body)
        },
    )


def snapshot(run):
    run.refresh_from_db()
    return (run.status, run.finished_at, run.error, run.pending_action, wallet_summary(run.team))


@pytest.mark.parametrize(
    ("case", "expected_status", "verdict"),
    [
        ("another secret", 401, WebhookDelivery.Verdict.BAD_SIGNATURE),
        ("stale by 330 s", 400, WebhookDelivery.Verdict.STALE),
        ("from the future by 330 s", 400, WebhookDelivery.Verdict.STALE),
        ("tampered byte", 401, WebhookDelivery.Verdict.BAD_SIGNATURE),
        ("no signature", 400, WebhookDelivery.Verdict.MALFORMED),
        ("garbled header", 400, WebhookDelivery.Verdict.MALFORMED),
        ("another run's id", 400, WebhookDelivery.Verdict.MALFORMED),
        ("not json", 400, WebhookDelivery.Verdict.MALFORMED),
    ],
)
def test_bad_deliveries_are_refused_recorded_and_change_nothing(
    client, run, case, expected_status, verdict
):
    before = snapshot(run)
    body = body_for(run)
    now = int(time.time())
    kwargs = {}
    if case == "another secret":
        kwargs = {"secret": "whsec_forged"}
    # Well past the 300 s tolerance: the exact boundary is tested with a fixed clock in
    # tests/runs/coasty/test_signing.py; here the server reads the real clock a moment after
    # signing.
    elif case == "stale by 330 s":
        kwargs = {"t": now - 330}
    elif case == "from the future by 330 s":
        kwargs = {"t": now + 330}
    elif case == "tampered byte":
        signed = signature_header(SECRET, now, body)
        body = body.replace(b"succeeded", b"cancelled", 1)
        kwargs = {"header": signed}
    elif case == "no signature":
        kwargs = {"header": ""}
    elif case == "garbled header":
        kwargs = {"header": "t=abc,v1=zz"}
    elif case == "another run's id":
        body = body_for(run, run_id="run_someone_else")
    elif case == "not json":
        body = b"<html>oops</html>"

    response = deliver(client, run, body, **kwargs)

    assert response.status_code == expected_status
    delivery = WebhookDelivery.objects.get(run=run)
    assert delivery.verdict == verdict and bytes(delivery.body) == body
    assert snapshot(run) == before


def test_a_good_delivery_applies_once_and_duplicates_change_nothing(
    client, run, django_capture_on_commit_callbacks, monkeypatch
):
    body = body_for(run)

    with django_capture_on_commit_callbacks(execute=True):
        first = deliver(client, run, body)
        after_first = snapshot(run)
        second = deliver(client, run, body)  # Coasty retried: same body, fresh signature
        third = deliver(client, run, body)

    assert first.status_code == second.status_code == third.status_code == 200
    assert after_first[0] == RunStatus.SUCCEEDED
    # one settle enqueued for the three deliveries, and nothing else of the runs' (the
    # notifications' fan-out of the run's end is enqueued too)
    assert queued_tasks("runs.") == [("runs.tasks.settle_run", str(run.pk))]
    assert snapshot(run) == after_first
    verdicts = list(
        WebhookDelivery.objects.filter(run=run).order_by("id").values_list("verdict", flat=True)
    )
    assert verdicts == ["accepted", "duplicate", "duplicate"]


def test_a_delivery_url_is_resolved_by_the_first_pattern_tried():
    # Coasty's deliveries are the busiest requests: their URL is not looked for behind every page's
    first = get_resolver().url_patterns[0]
    path = reverse("coasty_webhook", args=[uuid.uuid4()]).lstrip("/")
    assert first.name == "coasty_webhook"
    assert first.resolve(path) is not None


def test_an_unknown_run_is_404_and_not_stored(client, run):
    response = client.post(
        "/webhooks/coasty/runs/00000000-0000-0000-0000-000000000000/",
        data=body_for(run),
        content_type="application/json",
    )
    assert response.status_code == 404
    assert WebhookDelivery.objects.count() == 0


def test_a_run_without_a_secret_answers_like_an_unknown_run(client, run):
    # given a run Coasty has not accepted here yet (or launched without webhooks): no secret
    Run.objects.filter(pk=run.pk).update(webhook_secret_encrypted="", status=RunStatus.PENDING)
    # when a delivery arrives for it, and one for a run that does not exist
    response = deliver(client, run, body_for(run))
    unknown = client.post(
        f"/webhooks/coasty/runs/{uuid.uuid4()}/",
        data=body_for(run),
        content_type="application/json",
    )
    # then both answer the same 404 (Coasty retries a non-2xx), and nothing is stored
    assert (response.status_code, response.json()) == (unknown.status_code, unknown.json())
    assert response.status_code == 404
    assert WebhookDelivery.objects.count() == 0
    run.refresh_from_db()
    assert run.status == RunStatus.PENDING


def test_an_oversized_delivery_is_refused(client, run):
    response = deliver(client, run, b"{" + b" " * (256 * 1024) + b"}")
    assert response.status_code == 413


def test_the_secret_is_never_shown(run, client_for, make_member):
    viewer = make_member(run.team, "manager")
    page = client_for(viewer).get(reverse("run_detail", args=[run.pk])).content.decode()
    assert SECRET not in page and run.webhook_secret_encrypted not in page
