"""Submitting a run to a fake Coasty: one upstream run under the run's own key however often
it is sent, a refusal that fails the run, a failure that waits for another attempt."""

import pytest

from portal.core.crypto import decrypt_secret
from runs import services
from runs.coasty import CoastyServerError, CoastyValidationError
from runs.models import Run, RunStatus
from tests.runs.support import _accepted_run, _launch, _wallet

pytestmark = pytest.mark.django_db


def test_submit_sends_the_same_key_and_body_every_time_and_creates_one_upstream_run(
    funded_team, make_member, coasty
):
    run, _ = _launch(funded_team, make_member(funded_team))

    # when the submit task runs three times (a retry, a second worker, the sweep)
    for _ in range(3):
        Run.objects.filter(pk=run.pk).update(status=RunStatus.PENDING)  # as if the answer were lost
        services.run_submit(run_id=run.pk)

    creates = [c for c in coasty.calls if c[0] == "create"]
    assert len({c[1] for c in creates}) == 1
    assert all(c[2] == creates[0][2] for c in creates)
    assert len(coasty.runs) == 1
    run.refresh_from_db()
    assert run.upstream_id == "run_1" and run.status == RunStatus.QUEUED
    assert decrypt_secret(run.webhook_secret_encrypted) == "whsec_run_1"
    assert "whsec_run_1" not in run.webhook_secret_encrypted


def test_a_deterministic_refusal_fails_the_run_and_releases_the_hold(
    funded_team, make_member, coasty
):
    run, _ = _launch(funded_team, make_member(funded_team))
    coasty.fail_create_with = CoastyValidationError(
        status=422,
        code="VALIDATION_ERROR",
        message="machine_id is not yours",
        type="validation_error",
    )

    services.run_submit(run_id=run.pk)
    services.run_submit(run_id=run.pk)  # a repeat changes nothing more

    run.refresh_from_db()
    assert run.status == RunStatus.SUBMIT_FAILED
    assert "machine_id is not yours" in run.error
    assert _wallet(funded_team) == (5000, 0, 0)


def test_a_transient_failure_leaves_the_run_pending_for_a_later_attempt(
    funded_team, make_member, coasty
):
    run, _ = _launch(funded_team, make_member(funded_team))
    coasty.fail_create_with = CoastyServerError(
        status=503, code="SERVICE_UNAVAILABLE", message="busy", retryable=True
    )

    services.run_submit(run_id=run.pk)

    run.refresh_from_db()
    assert run.status == RunStatus.PENDING and run.submit_next_at is not None
    assert _wallet(funded_team) == (4950, 50, 0)


def test_an_unknown_status_in_the_create_answer_is_taken_as_queued(
    funded_team, make_member, coasty
):
    # given Coasty answers the create with a status it has not documented
    original = coasty.create_run_or_recover

    def create(body, *, idempotency_key):
        result = original(body, idempotency_key=idempotency_key)
        result.run["status"] = "provisioning"
        return result

    coasty.create_run_or_recover = create

    # when the run is submitted
    run = _accepted_run(funded_team, make_member(funded_team), coasty)

    # then it is accepted and live (followed), not left pending to be submitted again
    assert run.status == "queued" and run.upstream_id
    services.run_submit(run_id=run.pk)
    assert sum(1 for c in coasty.calls if c[0] == "create") == 1
