"""Runs services against a fake Coasty: launch, submit, ingest, settle, and their repeats."""

import uuid
from dataclasses import dataclass, field

import pytest

from billing.errors import InsufficientFunds
from portal.core import queue
from portal.core.crypto import decrypt_secret
from runs import services, upstream
from runs.coasty import CoastyServerError, CoastyValidationError
from runs.models import Run, RunEvent, RunStatus
from runs.services import IncomingEvent, LaunchRequest
from tests.factories import top_up as fund_team

pytestmark = pytest.mark.django_db


@dataclass
class CreateResult:
    run: dict
    replayed: bool = False
    test_mode: bool = False


@dataclass
class FakeCoasty:
    """Just enough of CoastyClient: records calls, answers from a script."""

    runs: dict = field(default_factory=dict)
    creates_by_key: dict = field(default_factory=dict)
    fail_create_with: Exception | None = None
    calls: list = field(default_factory=list)

    def create_run_or_recover(self, body, *, idempotency_key):
        self.calls.append(("create", idempotency_key, body))
        if self.fail_create_with:
            raise self.fail_create_with
        if idempotency_key not in self.creates_by_key:
            upstream_id = f"run_{len(self.runs) + 1}"
            self.runs[upstream_id] = {
                "id": upstream_id,
                "object": "agent.run",
                "status": "queued",
                "steps_completed": 0,
                "credits_charged": 0,
                "webhook_secret": f"whsec_{upstream_id}",
            }
            self.creates_by_key[idempotency_key] = upstream_id
            return CreateResult(dict(self.runs[upstream_id]))
        return CreateResult(dict(self.runs[self.creates_by_key[idempotency_key]]), replayed=True)

    def get_run(self, upstream_id):
        self.calls.append(("get", upstream_id))
        return {k: v for k, v in self.runs[upstream_id].items() if k != "webhook_secret"}

    def finish(self, upstream_id, status, steps, price=5):
        self.runs[upstream_id].update(
            status=status, steps_completed=steps, credits_charged=steps * price
        )


@pytest.fixture
def coasty(monkeypatch):
    fake = FakeCoasty()
    monkeypatch.setattr(upstream, "coasty", lambda: fake)
    return fake


@pytest.fixture
def funded_team(team):
    fund_team(team, 5000)
    return team


def _launch(team, user, **overrides):
    request = LaunchRequest(
        **{"machine_id": "vm-linux-1", "task": "Export leads", "max_steps": 10, **overrides}
    )
    return services.run_launch(
        team=team, user=user, request=request, launch_token=overrides.pop("token", None)
    )


def _wallet(team):
    from billing.selectors import wallet_summary

    summary = wallet_summary(team)
    return summary.available_cents, summary.held_cents, summary.spent_cents


def test_launch_holds_the_maximum_cost_and_submits_after_commit(
    funded_team, make_member, django_capture_on_commit_callbacks
):
    # given a member of a team with $50
    bob = make_member(funded_team, "member")

    # when bob launches a 10-step run on v5 (5¢ a step)
    with django_capture_on_commit_callbacks() as callbacks:
        run, created = _launch(funded_team, bob)

    # then 50¢ is held, the run waits for Coasty, and one submit task is queued after commit
    assert created and run.status == RunStatus.PENDING and run.held_cents == 50
    assert _wallet(funded_team) == (4950, 50, 0)
    assert len(callbacks) == 1
    assert run.idempotency_key == f"portal-run-{run.pk}"


def test_launch_the_wallet_cannot_cover_creates_nothing(team, make_member):
    fund_team(team, 40)
    bob = make_member(team, "member")

    with pytest.raises(InsufficientFunds) as refused:
        _launch(team, bob, max_steps=10)

    assert (refused.value.available_cents, refused.value.needed_cents) == (40, 50)
    assert Run.objects.count() == 0
    assert _wallet(team) == (40, 0, 0)


def test_the_same_launch_token_twice_makes_one_run(funded_team, make_member):
    bob = make_member(funded_team, "member")
    token = uuid.uuid4()
    request = LaunchRequest(machine_id="vm-linux-1", task="t", max_steps=10)

    first, created_first = services.run_launch(
        team=funded_team, user=bob, request=request, launch_token=token
    )
    second, created_second = services.run_launch(
        team=funded_team, user=bob, request=request, launch_token=token
    )

    assert (created_first, created_second) == (True, False)
    assert first.pk == second.pk and Run.objects.count() == 1
    assert _wallet(funded_team) == (4950, 50, 0)


def test_v1_runs_are_priced_at_8_cents_a_step(funded_team, make_member):
    run, _ = _launch(funded_team, make_member(funded_team), cua_version="v1", max_steps=10)
    assert (run.price_cents, run.held_cents) == (8, 80)


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


def _accepted_run(team, user, coasty, **overrides):
    run, _ = _launch(team, user, **overrides)
    services.run_submit(run_id=run.pk)
    run.refresh_from_db()
    return run


def _step_events(first_seq, step):
    return [
        IncomingEvent(first_seq, "reasoning", {"step": step, "text": "look"}),
        IncomingEvent(first_seq + 1, "tool_call", {"step": step, "tool": "click", "input": {}}),
        IncomingEvent(
            first_seq + 2, "tool_result", {"step": step, "tool": "click", "ok": True, "output": ""}
        ),
        IncomingEvent(first_seq + 3, "step", {"step": step, "steps_completed": step}),
        IncomingEvent(first_seq + 4, "billing", {"step": step, "credits_charged": 5}),
    ]


def test_ingest_charges_each_step_once_however_often_events_repeat(
    funded_team, make_member, coasty
):
    run = _accepted_run(funded_team, make_member(funded_team), coasty)
    events = [
        IncomingEvent(1, "status", {"status": "running"}),
        *_step_events(2, 1),
        *_step_events(7, 2),
    ]

    # when the same events arrive three times, in pieces and out of order
    services.events_ingest(run_id=run.pk, events=events)
    services.events_ingest(run_id=run.pk, events=list(reversed(events)))
    services.events_ingest(run_id=run.pk, events=events[5:])

    run.refresh_from_db()
    assert RunEvent.objects.filter(run=run).count() == len(events)
    assert (run.status, run.steps_completed, run.charged_cents, run.last_seq) == (
        "running",
        2,
        10,
        11,
    )
    assert _wallet(funded_team) == (4950, 40, 10)


def test_status_never_moves_backwards(funded_team, make_member, coasty):
    run = _accepted_run(funded_team, make_member(funded_team), coasty)

    services.events_ingest(
        run_id=run.pk,
        events=[
            IncomingEvent(1, "status", {"status": "running"}),
            IncomingEvent(5, "awaiting_human", {"reason": "captcha"}),
        ],
    )
    # a late, lower seq "running" does not undo the pause
    services.events_ingest(
        run_id=run.pk, events=[IncomingEvent(3, "status", {"status": "running"})]
    )
    run.refresh_from_db()
    assert (run.status, run.awaiting_human_reason) == ("awaiting_human", "captcha")

    services.events_ingest(run_id=run.pk, events=[IncomingEvent(6, "resumed", {"note": "done"})])
    services.events_ingest(
        run_id=run.pk, events=[IncomingEvent(7, "done", {"status": "succeeded"})]
    )
    services.events_ingest(
        run_id=run.pk, events=[IncomingEvent(8, "status", {"status": "running"})]
    )
    run.refresh_from_db()
    assert run.status == "succeeded"


def test_settle_charges_uncharged_steps_releases_the_rest_and_is_idempotent(
    funded_team, make_member, coasty
):
    # given a run that streamed only its first step before ending after 3 steps
    run = _accepted_run(funded_team, make_member(funded_team), coasty)
    services.events_ingest(run_id=run.pk, events=_step_events(1, 1))
    coasty.finish(run.upstream_id, "succeeded", steps=3)

    # when it is settled twice
    services.run_settle(run_id=run.pk)
    services.run_settle(run_id=run.pk)

    # then exactly 3 steps are charged and the other 35¢ came back
    run.refresh_from_db()
    assert (run.status, run.steps_completed, run.charged_cents) == ("succeeded", 3, 15)
    assert run.settled_at is not None
    assert _wallet(funded_team) == (4985, 0, 15)
    assert sum(1 for c in coasty.calls if c[0] == "get") == 1


def test_settle_waits_while_coasty_says_the_run_is_live(funded_team, make_member, coasty):
    run = _accepted_run(funded_team, make_member(funded_team), coasty)
    services.run_settle(run_id=run.pk)
    run.refresh_from_db()
    assert run.settled_at is None and _wallet(funded_team) == (4950, 50, 0)


def test_cancel_of_an_ended_run_is_refused_with_a_reason(funded_team, make_member, coasty):
    run = _accepted_run(funded_team, make_member(funded_team), coasty)
    coasty.finish(run.upstream_id, "failed", steps=0)
    services.events_ingest(run_id=run.pk, events=[IncomingEvent(1, "done", {"status": "failed"})])

    with pytest.raises(services.RunActionRefused, match="already ended"):
        services.run_request_cancel(run=run, user=None)


def _webhook(run, payload):
    """Deliver `payload` as Coasty would: signed with the run's own secret (FakeCoasty's)."""
    import json
    import time

    from runs.coasty import signature_header

    body = json.dumps(payload).encode()
    header = signature_header(f"whsec_{run.upstream_id}", int(time.time()), body)
    return services.webhook_receive(run_id=run.pk, body=body, headers={"Coasty-Signature": header})


def test_an_older_stream_event_does_not_undo_a_newer_webhook(funded_team, make_member, coasty):
    # given the awaiting_human webhook arrived before the stream's earlier events were stored
    run = _accepted_run(funded_team, make_member(funded_team), coasty)
    _webhook(
        run,
        {
            "event": "run.awaiting_human",
            "run_id": run.upstream_id,
            "status": "awaiting_human",
            "awaiting_human_reason": "captcha",
            "created_at": "2026-11-28T10:00:05Z",
        },
    )
    run.refresh_from_db()
    services.run_request_resume(run=run, user=None, note="solved")

    # when the stream then delivers the older "running" status (seq 2) and the pause (seq 8)
    services.events_ingest(
        run_id=run.pk,
        events=[
            IncomingEvent(2, "status", {"status": "running", "at": "2026-11-28T10:00:01Z"}),
            IncomingEvent(8, "awaiting_human", {"reason": "captcha", "at": "2026-11-28T10:00:05Z"}),
        ],
    )

    # then the run still waits for a human and the resume request stands
    run.refresh_from_db()
    assert (run.status, run.pending_action) == ("awaiting_human", "resume")

    # and the real resume (newer seq and time) moves it on
    services.events_ingest(
        run_id=run.pk,
        events=[
            IncomingEvent(10, "resumed", {"note": "solved", "at": "2026-11-28T10:00:09Z"}),
        ],
    )
    run.refresh_from_db()
    assert (run.status, run.pending_action) == ("running", "")


def test_a_late_awaiting_human_webhook_does_not_pause_a_resumed_run(
    funded_team, make_member, coasty
):
    run = _accepted_run(funded_team, make_member(funded_team), coasty)
    services.events_ingest(
        run_id=run.pk,
        events=[
            IncomingEvent(1, "awaiting_human", {"reason": "captcha", "at": "2026-11-28T10:00:05Z"}),
            IncomingEvent(2, "resumed", {"note": "ok", "at": "2026-11-28T10:00:09Z"}),
        ],
    )

    answer = _webhook(
        run,
        {
            "event": "run.awaiting_human",
            "run_id": run.upstream_id,
            "status": "awaiting_human",
            "created_at": "2026-11-28T10:00:05Z",
        },
    )

    run.refresh_from_db()
    assert answer.status == 200 and answer.message.startswith("no change")
    assert run.status == "running"


def test_reconciliation_checks_settled_runs_against_coastys_current_figures(
    funded_team, make_member, coasty, monkeypatch
):
    from billing.models import Reconciliation
    from billing.services import reconcile_finished_holds
    from runs import reconciliation

    monkeypatch.setattr(reconciliation, "coasty_quick", lambda: coasty)
    run = _accepted_run(funded_team, make_member(funded_team), coasty)
    coasty.finish(run.upstream_id, "succeeded", steps=3)
    services.run_settle(run_id=run.pk)

    # when Coasty still agrees, the hold reconciles as matched
    reconcile_finished_holds(caused_by="job:test")
    record = Reconciliation.objects.get(run_id=run.pk)
    assert record.status == "matched" and record.upstream_credits_charged == 15

    # when Coasty later reports a step more than was charged, it becomes a discrepancy
    coasty.finish(run.upstream_id, "succeeded", steps=4)
    reconcile_finished_holds(caused_by="job:test")
    record.refresh_from_db()
    assert record.status == "discrepancy"
    assert (record.ledger_captured_cents, record.upstream_credits_charged) == (15, 20)


def test_housekeeping_picks_up_what_a_crash_left_behind(
    funded_team, make_member, coasty, monkeypatch, django_capture_on_commit_callbacks
):
    import datetime as dt

    from django.utils import timezone

    enqueued = []
    monkeypatch.setattr(queue, "async_task", lambda func, *args: enqueued.append((func, *args)))
    user = make_member(funded_team)
    long_ago = timezone.now() - dt.timedelta(hours=1)

    # a pending run whose submit task was lost
    stuck, _ = _launch(funded_team, user)
    Run.objects.filter(pk=stuck.pk).update(created_at=long_ago)
    # a live run past its deadline (plus grace) that no event or webhook has ended
    overdue = _accepted_run(funded_team, user, coasty, deadline_seconds=60)
    Run.objects.filter(pk=overdue.pk).update(accepted_at=long_ago, last_event_at=timezone.now())
    # a run that ended but was never settled
    ended = _accepted_run(funded_team, user, coasty)
    Run.objects.filter(pk=ended.pk).update(status=RunStatus.SUCCEEDED)
    # a live run within its deadline and followed by nobody
    fresh = _accepted_run(funded_team, user, coasty, deadline_seconds=3600)
    Run.objects.filter(pk=fresh.pk).update(last_event_at=timezone.now())

    with django_capture_on_commit_callbacks(execute=True):
        counts = services.runs_housekeeping()

    assert ("runs.tasks.submit_run", str(stuck.pk)) in enqueued
    assert ("runs.tasks.settle_run", str(overdue.pk)) in enqueued
    assert ("runs.tasks.settle_run", str(ended.pk)) in enqueued
    assert ("runs.tasks.settle_run", str(fresh.pk)) not in enqueued
    assert ("runs.tasks.follow_runs",) in enqueued
    assert counts["submit"] == 1 and counts["settle"] == 2


# --- Batches: the follower hands over many events of a run at once --------------------------


def test_one_batch_of_many_steps_charges_each_step_once(funded_team, make_member, coasty):
    run = _accepted_run(funded_team, make_member(funded_team), coasty, max_steps=10)
    events = [IncomingEvent(1, "status", {"status": "running"})]
    for step in range(1, 6):
        events += _step_events(2 + 5 * (step - 1), step)
    # when the whole batch arrives, then half of it again, then all of it again
    services.events_ingest(run_id=run.pk, events=events)
    services.events_ingest(run_id=run.pk, events=events[10:])
    services.events_ingest(run_id=run.pk, events=events)
    run.refresh_from_db()
    assert (run.steps_completed, run.charged_cents, run.last_seq) == (5, 25, 26)
    assert RunEvent.objects.filter(run=run).count() == len(events)
    assert _wallet(funded_team) == (5000 - 50, 25, 25)


def test_steps_beyond_max_steps_in_a_batch_are_not_charged(funded_team, make_member, coasty):
    run = _accepted_run(funded_team, make_member(funded_team), coasty, max_steps=2)
    events = [*_step_events(1, 1), *_step_events(6, 2), *_step_events(11, 3)]
    services.events_ingest(run_id=run.pk, events=events)
    run.refresh_from_db()
    assert (run.steps_completed, run.charged_cents) == (2, 10)
    assert _wallet(funded_team) == (5000 - 10, 0, 10)


def test_a_batch_costs_the_same_statements_whatever_its_size(
    funded_team, make_member, coasty, requires_postgres, django_assert_max_num_queries
):
    run = _accepted_run(funded_team, make_member(funded_team), coasty, max_steps=50)
    events = []
    for step in range(1, 31):
        events += _step_events(1 + 5 * (step - 1), step)
    # lock the run, store 150 events, charge 30 steps, read the hold, save the run
    with django_assert_max_num_queries(9):
        services.events_ingest(run_id=run.pk, events=events)
    run.refresh_from_db()
    assert (run.steps_completed, run.charged_cents) == (30, 150)


def test_an_event_with_a_nul_character_is_stored_and_the_stream_goes_on(
    funded_team, make_member, coasty
):
    run = _accepted_run(funded_team, make_member(funded_team), coasty)

    services.events_ingest(
        run_id=run.pk,
        events=[
            IncomingEvent(1, "text", {"text": "bad\x00byte", "nested": ["\x00"]}),
            IncomingEvent(2, "status", {"status": "running"}),
        ],
    )

    run.refresh_from_db()
    assert run.last_seq == 2 and run.status == "running"
    stored = RunEvent.objects.get(run=run, seq=1).data
    assert stored == {"text": "bad\ufffdbyte", "nested": ["\ufffd"]}


def test_an_impossible_timestamp_is_ignored_not_a_failed_batch(funded_team, make_member, coasty):
    # given a run whose stream and webhook stamp a date that does not exist
    run = _accepted_run(funded_team, make_member(funded_team), coasty)

    # when the stream brings a pause stamped 30 February, then a webhook says the same
    services.events_ingest(
        run_id=run.pk,
        events=[
            IncomingEvent(1, "status", {"status": "running"}),
            IncomingEvent(2, "awaiting_human", {"reason": "captcha", "at": "2026-02-30T00:00:00Z"}),
        ],
    )
    answer = _webhook(
        run,
        {
            "event": "run.succeeded",
            "run_id": run.upstream_id,
            "status": "succeeded",
            "created_at": "2026-13-45T00:00:00Z",
        },
    )

    # then both are applied, with our own clock standing in for the impossible one
    run.refresh_from_db()
    assert answer.status == 200
    assert (run.status, run.last_seq) == ("succeeded", 2)
    assert run.finished_at is not None


@pytest.mark.parametrize("word", ["submit_failed", "pending", "provisioning"])
def test_a_status_coasty_never_sends_changes_nothing(funded_team, make_member, coasty, word):
    run = _accepted_run(funded_team, make_member(funded_team), coasty)

    services.events_ingest(
        run_id=run.pk,
        events=[
            IncomingEvent(1, "status", {"status": "running"}),
            IncomingEvent(2, "status", {"status": word}),
            IncomingEvent(3, "done", {"status": word}),
        ],
    )
    _webhook(run, {"event": "run.failed", "run_id": run.upstream_id, "status": word})

    # then the run is still live, so the follower and settle still look after its hold
    run.refresh_from_db()
    assert run.status == "running" and run.finished_at is None
    coasty.finish(run.upstream_id, "succeeded", steps=2)
    services.run_settle(run_id=run.pk)
    assert _wallet(funded_team) == (4990, 0, 10)


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


def test_resume_while_a_cancel_is_pending_is_refused(funded_team, make_member, coasty):
    bob = make_member(funded_team)
    run = _accepted_run(funded_team, bob, coasty)
    services.events_ingest(
        run_id=run.pk, events=[IncomingEvent(1, "awaiting_human", {"reason": "captcha"})]
    )
    services.run_request_cancel(run=run, user=bob)

    with pytest.raises(services.RunActionRefused, match="cancel is already requested"):
        services.run_request_resume(run=run, user=bob, note="go on")

    run.refresh_from_db()
    assert (run.pending_action, run.resume_note) == ("cancel", "")
