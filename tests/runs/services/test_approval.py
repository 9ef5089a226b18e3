"""Approval above a threshold: the run waits holding its money, a manager other than the
launcher approves (submitted once) or rejects (hold released), and unanswered ones expire."""

import datetime as dt
from unittest import mock

import pytest
from django.utils import timezone

from billing import services as billing
from billing.errors import BudgetExceeded, MemberLimitExceeded
from billing.invariants import ledger_problems
from billing.selectors import budget_status
from portal.notifications.models import EventType, OutboxEvent
from runs import services
from runs.models import Run, RunStatus
from tests.runs.support import _launch, _wallet

pytestmark = pytest.mark.django_db


def approval_above(team, cents, limit=None):
    billing.budget_set(
        team=team,
        monthly_limit_cents=limit,
        approval_above_cents=cents,
        alert_percents=[],
        caused_by="command:tests",
    )


@pytest.fixture
def people(funded_team, make_member):
    return {
        "bob": make_member(funded_team, "member"),
        "alice": make_member(funded_team, "manager"),
        "mary": make_member(funded_team, "manager"),
        "victor": make_member(funded_team, "viewer"),
    }


def test_a_launch_above_the_threshold_waits_holds_and_is_not_submitted(
    funded_team, people, django_capture_on_commit_callbacks, monkeypatch
):
    approval_above(funded_team, 40)
    queued = []
    monkeypatch.setattr("portal.core.queue.async_task", lambda path, *a, **k: queued.append(path))
    with django_capture_on_commit_callbacks(execute=True):
        run, _ = _launch(funded_team, people["bob"], max_steps=10)  # 50 cents > 40
    assert run.status == RunStatus.AWAITING_APPROVAL
    assert _wallet(funded_team) == (4950, 50, 0)
    # nothing queued for Coasty (the notifications' fan-out of the approval request is)
    assert [path for path in queued if path.startswith("runs.")] == []
    assert "portal.notifications.tasks.event_fan_out" in queued
    event = OutboxEvent.objects.get(type=EventType.RUN_AWAITING_APPROVAL)
    assert event.subject == f"run:{run.pk}" and event.data["status"] == "awaiting_approval"
    assert not run.is_terminal


def test_a_launch_at_the_threshold_goes_straight_to_coasty(funded_team, people):
    approval_above(funded_team, 50)
    run, _ = _launch(funded_team, people["bob"], max_steps=10)
    assert run.status == RunStatus.PENDING


def test_submit_skips_a_run_that_awaits_approval(funded_team, people, coasty):
    approval_above(funded_team, 0)
    run, _ = _launch(funded_team, people["bob"])
    services.run_submit(run_id=run.pk)
    assert coasty.calls == []
    assert services.runs_housekeeping()["submit"] == 0


def test_approving_twice_submits_once(
    funded_team, people, coasty, django_capture_on_commit_callbacks
):
    approval_above(funded_team, 0)
    run, _ = _launch(funded_team, people["bob"])
    with django_capture_on_commit_callbacks() as callbacks:
        services.run_approve(run=run, user=people["alice"])
        services.run_approve(run=run, user=people["alice"])
        services.run_approve(run=run, user=people["mary"])
    # one submit task queued, and the worker's submit (run twice) sends one create
    assert len(callbacks) == 1
    services.run_submit(run_id=run.pk)
    services.run_submit(run_id=run.pk)
    assert [call[0] for call in coasty.calls] == ["create"]
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED
    assert run.decided_by == people["alice"] and run.decided_at is not None
    assert _wallet(funded_team) == (4950, 50, 0)  # the launch's hold, untouched


def test_a_run_approved_hours_after_launch_is_still_sent_to_coasty(
    funded_team, people, coasty, settings
):
    # given a run that waited three hours for a manager (past the pending age limit of one)
    settings.RUNS_PENDING_MAX_AGE_SECONDS = 3600
    approval_above(funded_team, 0)
    run, _ = _launch(funded_team, people["bob"])
    Run.objects.filter(pk=run.pk).update(created_at=timezone.now() - dt.timedelta(hours=3))
    run.refresh_from_db()

    # when a manager approves it, and housekeeping sweeps before and after the submit
    services.run_approve(run=run, user=people["alice"])
    services.runs_housekeeping()
    services.run_submit(run_id=run.pk)

    # then its key is sent once and the run is Coasty's: the age limit counts from approval
    run.refresh_from_db()
    assert [call[0] for call in coasty.calls] == ["create"]
    assert run.status == RunStatus.QUEUED and run.upstream_id


def test_the_pending_age_limit_of_an_approved_run_counts_from_its_approval(
    funded_team, people, coasty, settings, django_capture_on_commit_callbacks
):
    # given a run launched five hours ago, approved, waiting out its submit backoff
    settings.RUNS_PENDING_MAX_AGE_SECONDS = 3600
    approval_above(funded_team, 0)
    run, _ = _launch(funded_team, people["bob"])
    services.run_approve(run=run, user=people["alice"])
    now = timezone.now()
    later = {
        "created_at": now - dt.timedelta(hours=5),
        "submit_next_at": now + dt.timedelta(hours=1),
    }

    # when it was approved half an hour ago, its backoff stands: nothing is due
    Run.objects.filter(pk=run.pk).update(**later, decided_at=now - dt.timedelta(minutes=30))
    with django_capture_on_commit_callbacks():
        assert services.runs_housekeeping()["submit"] == 0

    # and two hours after its approval it is past the limit: due now, to be adopted or failed
    Run.objects.filter(pk=run.pk).update(**later, decided_at=now - dt.timedelta(hours=2))
    with django_capture_on_commit_callbacks():
        assert services.runs_housekeeping()["submit"] == 1


def test_rejecting_ends_the_run_and_releases_the_hold_once(funded_team, people, coasty):
    approval_above(funded_team, 0, limit=1000)
    run, _ = _launch(funded_team, people["bob"])
    for _ in range(2):
        services.run_reject(run=run, user=people["alice"], reason="Too many steps")
    run.refresh_from_db()
    assert run.status == RunStatus.REJECTED and run.is_terminal
    assert run.decision_reason == "Too many steps" and run.decided_by == people["alice"]
    assert run.settled_at is not None and run.finished_at is not None
    assert _wallet(funded_team) == (5000, 0, 0)
    assert budget_status(funded_team).month_used_cents == 0
    assert coasty.calls == []
    with pytest.raises(services.RunActionRefused):
        services.run_approve(run=run, user=people["mary"])


def test_an_approved_run_cannot_be_rejected(funded_team, people, coasty):
    approval_above(funded_team, 0)
    run, _ = _launch(funded_team, people["bob"])
    services.run_approve(run=run, user=people["alice"])
    with pytest.raises(services.RunActionRefused):
        services.run_reject(run=run, user=people["mary"], reason="no")


@pytest.mark.parametrize("who", ["bob", "victor"])
def test_members_and_viewers_cannot_decide(funded_team, people, who):
    approval_above(funded_team, 0)
    run, _ = _launch(funded_team, people["alice"])
    with pytest.raises(services.NotAnApprover):
        services.run_approve(run=run, user=people[who])
    with pytest.raises(services.NotAnApprover):
        services.run_reject(run=run, user=people[who], reason="no")
    assert Run.objects.get(pk=run.pk).status == RunStatus.AWAITING_APPROVAL


def test_the_launcher_cannot_approve_their_own_run_even_as_a_manager(funded_team, people):
    approval_above(funded_team, 0)
    run, _ = _launch(funded_team, people["alice"])
    with pytest.raises(services.NotAnApprover):
        services.run_approve(run=run, user=people["alice"])
    assert not services.may_decide(run, people["alice"])
    assert services.may_decide(run, people["mary"])


def test_a_reason_is_needed_to_reject(funded_team, people):
    approval_above(funded_team, 0)
    run, _ = _launch(funded_team, people["bob"])
    with pytest.raises(services.RunActionRefused):
        services.run_reject(run=run, user=people["alice"], reason="  ")


def test_unanswered_approvals_expire_after_a_day(funded_team, people, settings):
    approval_above(funded_team, 0)
    run, _ = _launch(funded_team, people["bob"])
    assert services.runs_expire_approvals() == 0
    later = timezone.now() + dt.timedelta(hours=24, seconds=1)
    assert services.runs_expire_approvals(now=later) == 1
    assert services.runs_expire_approvals(now=later) == 0
    run.refresh_from_db()
    assert run.status == RunStatus.REJECTED and run.decision_reason == "expired"
    assert run.decided_by is None
    assert _wallet(funded_team) == (5000, 0, 0)


def test_the_expiry_is_configurable_and_runs_in_housekeeping(funded_team, people, settings):
    settings.RUNS_APPROVAL_EXPIRY_SECONDS = 60
    approval_above(funded_team, 0)
    run, _ = _launch(funded_team, people["bob"])
    later = timezone.now() + dt.timedelta(seconds=61)
    with mock.patch("django.utils.timezone.now", return_value=later):
        counts = services.runs_housekeeping()
    assert counts["expired"] == 1
    assert Run.objects.get(pk=run.pk).status == RunStatus.REJECTED


def test_the_launcher_can_withdraw_a_run_that_waits(funded_team, people):
    approval_above(funded_team, 0)
    run, _ = _launch(funded_team, people["bob"])
    services.run_request_cancel(run=run, user=people["bob"])
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and run.settled_at is not None
    assert _wallet(funded_team) == (5000, 0, 0)


def test_budget_refusal_creates_no_run(funded_team, people):
    approval_above(funded_team, None, limit=40)
    with pytest.raises(BudgetExceeded):
        _launch(funded_team, people["bob"], max_steps=10)
    assert Run.objects.count() == 0


def test_member_limit_refusal_creates_no_run(funded_team, people):
    billing.member_limit_set(
        team=funded_team, user=people["bob"], monthly_limit_cents=40, caused_by="t"
    )
    with pytest.raises(MemberLimitExceeded):
        _launch(funded_team, people["bob"], max_steps=10)
    assert Run.objects.count() == 0
    _launch(funded_team, people["alice"], max_steps=10)


def test_ledger_is_green_after_every_path(funded_team, people, coasty):
    approval_above(funded_team, 0, limit=1000)
    a, _ = _launch(funded_team, people["bob"])
    b, _ = _launch(funded_team, people["bob"])
    services.run_approve(run=a, user=people["alice"])
    services.run_reject(run=b, user=people["alice"], reason="no")
    assert ledger_problems() == []


def test_approvals_for_lists_what_waits_for_each_manager(funded_team, people, other_team):
    from runs.selectors import approvals_for

    approval_above(funded_team, 0)
    by_bob, _ = _launch(funded_team, people["bob"])
    by_alice, _ = _launch(funded_team, people["alice"])
    assert list(approvals_for(people["mary"])) == [by_bob, by_alice]
    assert list(approvals_for(people["alice"])) == [by_bob]  # not her own
    assert list(approvals_for(people["bob"])) == []  # not a manager
    services.run_approve(run=by_bob, user=people["mary"])
    assert list(approvals_for(people["mary"])) == [by_alice]
