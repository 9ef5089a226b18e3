"""Submission that cannot orphan (issue 12, cases 1 and 2): the body frozen at launch, a refusal
that first asks Coasty's idempotency lookup, spent keys, the pending age limit and the key's
retention, cancelling a pending run, and an acceptance for a run already closed here."""

import datetime as dt

import pytest
from django.utils import timezone

from billing.models import Reconciliation
from runs import services
from runs.coasty import CoastyAuthError, CoastyServerError
from runs.models import PendingAction, Run, RunStatus
from runs.services.housekeeping import runs_housekeeping
from runs.services.submit import run_mark_accepted
from tests.runs.support import _launch, _wallet

pytestmark = pytest.mark.django_db


def creates(coasty):
    return [c for c in coasty.calls if c[0] == "create"]


def test_the_body_is_frozen_at_launch_so_a_renamed_team_sends_the_same_bytes(
    funded_team, make_member, coasty
):
    # given a run whose first attempt reached Coasty but whose answer was lost
    run, _ = _launch(funded_team, make_member(funded_team))
    coasty.create_run_or_recover = coasty.create_lost
    services.run_submit(run_id=run.pk)

    # when the team is renamed before the retry
    funded_team.slug = "renamed-team"
    funded_team.save()
    del coasty.create_run_or_recover  # Coasty answers again
    services.run_submit(run_id=run.pk)

    # then the retry sent the very same body, and Coasty replayed the one run it made
    first, second = creates(coasty)
    assert first[2] == second[2]
    assert len(coasty.runs) == 1
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED and run.upstream_id == "run_1"


def test_a_refusal_after_an_attempt_whose_answer_was_lost_adopts_the_run_coasty_holds(
    funded_team, make_member, coasty
):
    # given a first attempt that created the run upstream but whose answer (and lookup) was lost
    run, _ = _launch(funded_team, make_member(funded_team))
    coasty.create_run_or_recover = coasty.create_lost
    services.run_submit(run_id=run.pk)
    del coasty.create_run_or_recover

    # when the retry is refused for good (the API key was rotated: 401)
    coasty.fail_create_with = CoastyAuthError("Invalid API key", status=401, code="UNAUTHORIZED")
    services.run_submit(run_id=run.pk)

    # then the idempotency lookup found the run, and it is adopted instead of failed
    run.refresh_from_db()
    assert ("lookup", run.idempotency_key) in coasty.calls
    assert run.status == RunStatus.QUEUED and run.upstream_id == "run_1"
    assert _wallet(funded_team) == (4950, 50, 0)  # still held, for the run Coasty runs


def test_a_refusal_with_no_run_under_the_key_fails_the_run_and_releases_the_hold(
    funded_team, make_member, coasty
):
    run, _ = _launch(funded_team, make_member(funded_team))
    coasty.fail_create_with = CoastyAuthError("Invalid API key", status=401, code="UNAUTHORIZED")
    services.run_submit(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.SUBMIT_FAILED
    assert _wallet(funded_team) == (5000, 0, 0)


def spent_key_error():
    envelope = {
        "code": "INTERNAL_ERROR",
        "message": "The run failed to start and was refunded; use a new key.",
        "retryable": True,
        "retry_with_same_idempotency_key": False,
    }
    return CoastyServerError(
        envelope["message"],
        status=500,
        code="INTERNAL_ERROR",
        retryable=True,
        retry_with_same_idempotency_key=False,
        envelope=envelope,
    )


def test_a_spent_key_is_a_permanent_answer_not_retried_for_ever(funded_team, make_member, coasty):
    # given Coasty answers 5xx saying the key may not be retried
    run, _ = _launch(funded_team, make_member(funded_team))
    coasty.fail_create_with = spent_key_error()

    # when the run is submitted
    services.run_submit(run_id=run.pk)

    # then it has failed for good and its hold is back, instead of pending under a dead key
    run.refresh_from_db()
    assert run.status == RunStatus.SUBMIT_FAILED and run.submit_next_at is None
    assert "refunded" in run.error
    assert _wallet(funded_team) == (5000, 0, 0)


def test_a_pending_run_past_its_age_limit_is_failed_without_sending_again(
    funded_team, make_member, coasty, settings
):
    # given a run Coasty kept answering 503 for, now older than the pending age limit
    settings.RUNS_PENDING_MAX_AGE_SECONDS = 3600
    run, _ = _launch(funded_team, make_member(funded_team))
    coasty.fail_create_with = CoastyServerError("busy", status=503, code="UNAVAILABLE")
    services.run_submit(run_id=run.pk)
    Run.objects.filter(pk=run.pk).update(created_at=timezone.now() - dt.timedelta(hours=2))
    sent = len(creates(coasty))

    # when the sweep comes round
    services.run_submit(run_id=run.pk)

    # then no request went out; Coasty holds nothing under the key, so the run failed and
    # its hold came back
    assert len(creates(coasty)) == sent
    run.refresh_from_db()
    assert run.status == RunStatus.SUBMIT_FAILED and "did not accept" in run.error
    assert _wallet(funded_team) == (5000, 0, 0)


def test_a_pending_run_past_its_age_limit_that_coasty_holds_is_adopted(
    funded_team, make_member, coasty, settings
):
    settings.RUNS_PENDING_MAX_AGE_SECONDS = 3600
    run, _ = _launch(funded_team, make_member(funded_team))
    coasty.create_run_or_recover = coasty.create_lost
    services.run_submit(run_id=run.pk)
    Run.objects.filter(pk=run.pk).update(created_at=timezone.now() - dt.timedelta(hours=2))

    services.run_submit(run_id=run.pk)

    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED and run.upstream_id == "run_1"


def test_no_key_is_sent_near_the_end_of_coastys_retention(
    funded_team, make_member, coasty, settings
):
    # given an age limit longer than Coasty keeps keys (24 h), and a run 23 hours old
    settings.RUNS_PENDING_MAX_AGE_SECONDS = 48 * 3600
    run, _ = _launch(funded_team, make_member(funded_team))
    Run.objects.filter(pk=run.pk).update(created_at=timezone.now() - dt.timedelta(hours=23))

    services.run_submit(run_id=run.pk)

    # then the key was not sent again (a forgotten key would create a second run)
    assert creates(coasty) == []
    run.refresh_from_db()
    assert run.status == RunStatus.SUBMIT_FAILED


def test_housekeeping_resolves_a_pending_run_past_its_age_even_during_its_backoff(
    funded_team, make_member, coasty, settings, django_capture_on_commit_callbacks
):
    settings.RUNS_PENDING_MAX_AGE_SECONDS = 3600
    run, _ = _launch(funded_team, make_member(funded_team))
    Run.objects.filter(pk=run.pk).update(
        created_at=timezone.now() - dt.timedelta(hours=2),
        submit_next_at=timezone.now() + dt.timedelta(minutes=5),
    )
    with django_capture_on_commit_callbacks() as callbacks:
        counts = runs_housekeeping()
    assert counts["submit"] == 1 and callbacks


def test_cancelling_a_run_never_sent_ends_it_at_once_and_nothing_is_sent_after(
    funded_team, make_member, coasty
):
    # given a run whose submit has not started yet
    user = make_member(funded_team)
    run, _ = _launch(funded_team, user)

    # when it is cancelled, then the submit task runs
    services.run_request_cancel(run=run, user=user)
    services.run_submit(run_id=run.pk)

    # then it is cancelled and settled with its hold back, and Coasty never heard of it
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and run.settled_at is not None
    assert creates(coasty) == []
    assert _wallet(funded_team) == (5000, 0, 0)


def test_cancelling_a_run_whose_submit_is_unanswered_asks_coasty_now_and_cancels_it_there(
    funded_team, make_member, coasty, django_capture_on_commit_callbacks
):
    # given a run sent once, its answer lost
    user = make_member(funded_team)
    run, _ = _launch(funded_team, user)
    coasty.create_run_or_recover = coasty.create_lost
    services.run_submit(run_id=run.pk)
    del coasty.create_run_or_recover

    # when it is cancelled
    with django_capture_on_commit_callbacks() as callbacks:
        services.run_request_cancel(run=run, user=user)
    # then the submit is asked again at once (not at the next backoff)
    assert callbacks
    services.run_submit(run_id=run.pk)
    services.run_cancel_upstream(run_id=run.pk)

    # and once Coasty's answer is known, the run is cancelled there
    run.refresh_from_db()
    assert ("cancel", "run_1") in coasty.calls
    assert run.status == RunStatus.CANCELLED


def test_cancelling_a_run_whose_attempt_never_reached_coasty_sends_no_new_post(
    funded_team, make_member, coasty
):
    # given a run whose one attempt failed in transit (Coasty never saw it)
    from runs.coasty import CoastyTransportError

    user = make_member(funded_team)
    run, _ = _launch(funded_team, user)
    coasty.fail_create_with = CoastyTransportError("connection reset", code="TRANSPORT")
    services.run_submit(run_id=run.pk)
    coasty.fail_create_with = None

    # when it is cancelled and the submit task runs (twice: a repeat changes nothing)
    services.run_request_cancel(run=run, user=user)
    services.run_submit(run_id=run.pk)
    services.run_submit(run_id=run.pk)

    # then Coasty was asked, not sent the run again: it ends here with its hold back
    run.refresh_from_db()
    assert len(creates(coasty)) == 1 and ("lookup", run.idempotency_key) in coasty.calls
    assert run.status == RunStatus.CANCELLED and run.settled_at is not None
    assert "holds no run" in run.error
    assert _wallet(funded_team) == (5000, 0, 0)


def test_an_acceptance_for_a_run_closed_here_is_an_orphan_cancelled_and_recorded(
    funded_team, make_member, coasty, django_capture_on_commit_callbacks, monkeypatch
):
    # given a run that failed here while Coasty was creating it after all
    run, _ = _launch(funded_team, make_member(funded_team))
    coasty.fail_create_with = CoastyAuthError("Invalid API key", status=401, code="UNAUTHORIZED")
    services.run_submit(run_id=run.pk)
    coasty.fail_create_with = None
    answer = coasty.create_run_or_recover({}, idempotency_key="other").run

    # when Coasty's acceptance arrives (twice: a repeat changes nothing)
    queued = []
    monkeypatch.setattr("portal.core.queue.async_task", lambda path, *a, **k: queued.append(path))
    with django_capture_on_commit_callbacks(execute=True):
        run_mark_accepted(run_id=run.pk, answer=answer)
        run_mark_accepted(run_id=run.pk, answer=answer)
    services.run_cancel_orphan_upstream(run_id=run.pk)

    # then it is cancelled upstream, recorded on the run and as a discrepancy, never charged
    run.refresh_from_db()
    assert [path for path in queued if path.startswith("runs.")] == [
        "runs.tasks.cancel_orphan_upstream"
    ]
    assert run.status == RunStatus.SUBMIT_FAILED and run.orphan_upstream_id == answer["id"]
    assert run.orphan_cancelled_at is not None
    assert coasty.runs[answer["id"]]["status"] == "cancelled"
    record = Reconciliation.objects.get(run_id=run.pk)
    assert record.is_open_discrepancy and answer["id"] in record.explanation
    assert _wallet(funded_team) == (5000, 0, 0)


def test_a_webhook_for_a_run_closed_here_checks_for_an_orphan(
    funded_team, make_member, coasty, django_capture_on_commit_callbacks
):
    # given a run that failed here, while Coasty holds a run under its key
    run, _ = _launch(funded_team, make_member(funded_team))
    Run.objects.filter(pk=run.pk).update(status=RunStatus.SUBMIT_FAILED)
    coasty.create_run_or_recover({}, idempotency_key=run.idempotency_key)
    body = b'{"event":"run.succeeded","run_id":"run_1","status":"succeeded"}'

    # when Coasty delivers a webhook for it
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        first = services.webhook_receive(run_id=run.pk, body=body, headers={})
    services.run_check_orphan(run_id=run.pk)
    services.run_cancel_orphan_upstream(run_id=run.pk)
    with django_capture_on_commit_callbacks(execute=False) as later:
        again = services.webhook_receive(run_id=run.pk, body=body, headers={})

    # then it is answered like an unknown run (it has no secret to verify with), yet the
    # orphan check was asked for, found the orphan and cancelled it; a redelivery asks nothing
    assert first.status == 404 and len(callbacks) == 1
    run.refresh_from_db()
    assert run.orphan_upstream_id == "run_1" and run.pending_action == PendingAction.NONE
    assert again.status == 404 and later == []


def test_past_its_age_limit_a_run_coasty_cannot_answer_for_is_asked_again_then_failed(
    funded_team, make_member, coasty, settings
):
    from runs.coasty import CoastyServerError as Unavailable

    settings.RUNS_PENDING_MAX_AGE_SECONDS = 3600
    settings.RUNS_PENDING_LOOKUP_GRACE_SECONDS = 600
    run, _ = _launch(funded_team, make_member(funded_team))
    coasty.lookup_fails_with = Unavailable("busy", status=503, code="UNAVAILABLE")

    # when the lookup fails just past the age limit: the run waits, and nothing is sent
    Run.objects.filter(pk=run.pk).update(created_at=timezone.now() - dt.timedelta(minutes=61))
    services.run_submit(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.PENDING and creates(coasty) == []

    # and once the grace has passed too, it fails and its hold comes back
    Run.objects.filter(pk=run.pk).update(created_at=timezone.now() - dt.timedelta(minutes=71))
    services.run_submit(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.SUBMIT_FAILED and "could not be asked" in run.error
    assert _wallet(funded_team) == (5000, 0, 0)


def test_an_orphan_whose_key_coasty_forgot_is_found_from_the_run_a_webhook_names(
    funded_team, make_member, coasty
):
    # given a run closed here, and a Coasty run made for it whose key Coasty no longer keeps
    run, _ = _launch(funded_team, make_member(funded_team))
    Run.objects.filter(pk=run.pk).update(status=RunStatus.SUBMIT_FAILED)
    upstream = coasty.create_run_or_recover({}, idempotency_key="forgotten").run
    coasty.runs[upstream["id"]]["metadata"] = {"portal_run_id": str(run.pk)}
    coasty.creates_by_key.clear()
    stranger = coasty.create_run_or_recover({}, idempotency_key="someone-else").run

    # when webhooks name a stranger's run, then ours
    services.run_check_orphan(run_id=run.pk, upstream_id=stranger["id"])
    run.refresh_from_db()
    assert run.orphan_upstream_id == ""
    services.run_check_orphan(run_id=run.pk, upstream_id=upstream["id"])

    # then only the run whose metadata names this run is taken as its orphan
    run.refresh_from_db()
    assert run.orphan_upstream_id == upstream["id"]
