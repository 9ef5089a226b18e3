"""Every run converges (issue 12, cases 3 and 10): Coasty forgetting a run, a run that never
ends upstream, a result the database refuses, and stray step numbers. Each ends settled with
its hold closed, on Coasty's count of steps or, when that cannot be had, on what was captured,
with a discrepancy for the billing admins."""

import datetime as dt

import pytest
from django.utils import timezone

from billing.models import Hold, Reconciliation
from runs import services
from runs.coasty import CoastyServerError
from runs.models import Run, RunStatus
from runs.services import IncomingEvent
from runs.services.housekeeping import runs_housekeeping
from tests.runs.support import _accepted_run, _step_events, _wallet

pytestmark = pytest.mark.django_db


def test_a_run_coasty_forgets_is_settled_on_what_was_captured_within_the_bound(
    funded_team, make_member, coasty, settings
):
    # given a run that streamed two steps, which Coasty then forgets (GET answers 404)
    settings.RUNS_LOST_UPSTREAM_AFTER_SECONDS = 120
    run = _accepted_run(funded_team, make_member(funded_team), coasty)
    services.events_ingest(run_id=run.pk, events=_step_events(1, 1) + _step_events(6, 2))
    coasty.forgotten.add(run.upstream_id)

    # when settle first meets the 404, the run is marked and waits out the grace
    services.run_settle(run_id=run.pk)
    run.refresh_from_db()
    assert run.upstream_missing_since is not None and run.settled_at is None

    # and once the grace has passed, it is settled
    Run.objects.filter(pk=run.pk).update(
        upstream_missing_since=timezone.now() - dt.timedelta(minutes=3)
    )
    services.run_settle(run_id=run.pk)
    services.run_settle(run_id=run.pk)  # a repeat changes nothing

    # then on the two captured steps, marked lost upstream, the rest of its hold returned, and
    # a discrepancy open for a billing admin
    run.refresh_from_db()
    assert run.settled_at is not None and run.lost_upstream_at is not None
    assert run.status == RunStatus.FAILED and "Lost upstream" in run.error
    assert run.charged_cents == 10 and run.hold_remaining_cents == 0
    assert Hold.objects.get(reference=run.hold_reference).status == Hold.Status.SETTLED
    assert _wallet(funded_team) == (4990, 0, 10)
    record = Reconciliation.objects.get(run_id=run.pk)
    assert record.is_open_discrepancy and "no longer knows" in record.explanation


def test_housekeeping_keeps_asking_about_a_run_coasty_answered_404_for(
    funded_team, make_member, coasty, django_capture_on_commit_callbacks
):
    run = _accepted_run(funded_team, make_member(funded_team), coasty)
    Run.objects.filter(pk=run.pk).update(upstream_missing_since=timezone.now())
    with django_capture_on_commit_callbacks():
        counts = runs_housekeeping()
    assert counts["settle"] == 1


def test_a_run_that_never_ends_upstream_is_cancelled_then_settled_past_its_deadline(
    funded_team, make_member, coasty, settings
):
    # given a run with a 60 s deadline that Coasty still calls running long after it
    settings.RUNS_OVERDUE_CANCEL_AFTER_SECONDS = 120
    settings.RUNS_OVERDUE_SETTLE_AFTER_SECONDS = 420
    run = _accepted_run(funded_team, make_member(funded_team), coasty, deadline_seconds=60)
    coasty.runs[run.upstream_id]["status"] = "running"
    coasty.cancel_run = lambda upstream_id: coasty.calls.append(("cancel", upstream_id))

    # when settle comes round 3 minutes past the deadline: cancelled upstream, not yet settled
    Run.objects.filter(pk=run.pk).update(accepted_at=timezone.now() - dt.timedelta(minutes=4))
    services.run_settle(run_id=run.pk)
    run.refresh_from_db()
    assert ("cancel", run.upstream_id) in coasty.calls and run.settled_at is None

    # and 8 minutes past it: settled on what was captured, with a discrepancy
    Run.objects.filter(pk=run.pk).update(accepted_at=timezone.now() - dt.timedelta(minutes=9))
    services.run_settle(run_id=run.pk)
    run.refresh_from_db()
    assert run.settled_at is not None and run.is_terminal and run.hold_remaining_cents == 0
    assert _wallet(funded_team) == (5000, 0, 0)
    assert Reconciliation.objects.get(run_id=run.pk).is_open_discrepancy


def test_a_run_coasty_never_answers_for_is_settled_past_its_deadline(
    funded_team, make_member, coasty, settings
):
    # given a run that streamed one step and ended here, then Coasty only answers 503
    settings.RUNS_OVERDUE_SETTLE_AFTER_SECONDS = 420
    run = _accepted_run(funded_team, make_member(funded_team), coasty, deadline_seconds=60)
    services.events_ingest(run_id=run.pk, events=_step_events(1, 1))
    Run.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED)

    def unavailable(upstream_id):
        raise CoastyServerError("upstream down", status=503, code="UNAVAILABLE")

    coasty.get_run = unavailable

    # when settle runs within the bound, it fails loudly (the task is retried) and holds on
    Run.objects.filter(pk=run.pk).update(accepted_at=timezone.now() - dt.timedelta(minutes=5))
    with pytest.raises(CoastyServerError):
        services.run_settle(run_id=run.pk)
    run.refresh_from_db()
    assert run.settled_at is None and run.hold_remaining_cents > 0

    # and past it (deadline + 7 minutes), the run is settled on the step captured, its hold
    # closed and a discrepancy opened; a repeat changes nothing
    Run.objects.filter(pk=run.pk).update(accepted_at=timezone.now() - dt.timedelta(minutes=9))
    services.run_settle(run_id=run.pk)
    services.run_settle(run_id=run.pk)
    run.refresh_from_db()
    assert run.settled_at is not None and run.lost_upstream_at is not None
    assert run.status == RunStatus.SUCCEEDED and run.charged_cents == 5
    assert run.hold_remaining_cents == 0 and _wallet(funded_team) == (4995, 0, 5)
    record = Reconciliation.objects.get(run_id=run.pk)
    assert record.is_open_discrepancy and "did not answer" in record.explanation


def test_a_live_run_coasty_never_answers_for_is_cancelled_and_settled_past_its_deadline(
    funded_team, make_member, coasty, settings
):
    # given a running run, its deadline 9 minutes gone, and a Coasty that answers only 503
    settings.RUNS_OVERDUE_SETTLE_AFTER_SECONDS = 420
    run = _accepted_run(funded_team, make_member(funded_team), coasty, deadline_seconds=60)
    Run.objects.filter(pk=run.pk).update(
        status=RunStatus.RUNNING, accepted_at=timezone.now() - dt.timedelta(minutes=10)
    )

    def unavailable(*args):
        coasty.calls.append(("refused", *args))
        raise CoastyServerError("upstream down", status=503, code="UNAVAILABLE")

    coasty.get_run = coasty.cancel_run = unavailable

    # when settle comes round (twice)
    services.run_settle(run_id=run.pk)
    services.run_settle(run_id=run.pk)

    # then a cancel was tried once (Coasty may still be running it), and the run ended here
    # failed, its hold closed, a discrepancy open
    assert coasty.calls.count(("refused", run.upstream_id)) == 2  # one GET, one cancel
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.settled_at is not None
    assert run.hold_remaining_cents == 0 and _wallet(funded_team) == (5000, 0, 0)
    assert Reconciliation.objects.get(run_id=run.pk).is_open_discrepancy


def test_money_settles_even_when_the_result_cannot_be_stored(funded_team, make_member, coasty):
    # given Coasty's final record carries a result the database refuses (NaN is not JSON)
    run = _accepted_run(funded_team, make_member(funded_team), coasty)
    coasty.finish(run.upstream_id, "succeeded", steps=3)
    coasty.runs[run.upstream_id]["result"] = {"score": float("nan")}

    # when it is settled
    services.run_settle(run_id=run.pk)

    # then the money is final all the same
    run.refresh_from_db()
    assert run.settled_at is not None and run.charged_cents == 15
    assert _wallet(funded_team) == (4985, 0, 15)


def test_a_stray_step_number_is_not_charged_on_top_of_coastys_count(
    funded_team, make_member, coasty
):
    # given a run whose stream brings steps 1 to 3 and a stray step number 37
    run = _accepted_run(funded_team, make_member(funded_team), coasty, max_steps=50)
    events = _step_events(1, 1) + _step_events(6, 2) + _step_events(11, 3)
    events.append(IncomingEvent(16, "step", {"step": 37, "steps_completed": 37}))
    services.events_ingest(run_id=run.pk, events=events)

    # when Coasty's final count is 4 steps
    coasty.finish(run.upstream_id, "succeeded", steps=4)
    services.run_settle(run_id=run.pk)

    # then the team pays for exactly 4 steps, numbered 1 to 4
    run.refresh_from_db()
    assert run.charged_cents == 20 and run.steps_completed == 4
    hold = Hold.objects.get(reference=run.hold_reference)
    steps = sorted(hold.transfers.filter(kind="capture").values_list("step", flat=True))
    assert steps == [1, 2, 3, 4]
    assert Reconciliation.objects.get(run_id=run.pk).status == "matched"


def test_settle_charges_the_count_of_steps_whatever_numbers_were_charged_before(
    funded_team, make_member, coasty
):
    # given steps charged with numbers that are not 1..n (step 5 captured first)
    from billing import services as billing

    run = _accepted_run(funded_team, make_member(funded_team), coasty)
    billing.hold_capture(reference=run.hold_reference, step=5, amount_cents=5, caused_by="t")
    coasty.finish(run.upstream_id, "succeeded", steps=2)

    services.run_settle(run_id=run.pk)

    # then 2 steps in all are charged, not 2 more on top
    run.refresh_from_db()
    assert run.charged_cents == 10
