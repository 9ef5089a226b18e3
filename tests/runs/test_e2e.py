"""End to end: the portal, a real worker process and the simulator, with and without faults.

After every scenario the same promises are checked: Coasty created exactly one run for the
run's key, the portal agrees with Coasty on status and steps, the charge is steps × price, the
hold is fully settled, and the ledger's invariants hold (conftest checks those after each test).
"""

import pytest

from billing.errors import InsufficientFunds
from billing.selectors import wallet_summary
from runs import services
from runs.models import Run, RunStatus, WebhookDelivery
from runs.services import LaunchRequest
from tests.factories import top_up
from tests.live import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def bob(team, make_member):
    top_up(team, 5000)
    return make_member(team, "member", username="bob")


def launch(team, user, task="Export the leads", **fields):
    request = LaunchRequest(machine_id="vm-linux-1", task=task, **{"max_steps": 10, **fields})
    run, _ = services.run_launch(team=team, user=user, request=request)
    return run


def settled(run, timeout=45, sim=None):
    def done():
        run.refresh_from_db()
        return run.settled_at is not None

    try:
        wait_until(done, timeout=timeout, what=f"run {run.pk} to settle (status {run.status})")
    except AssertionError:
        if sim and run.upstream_id:
            upstream = sim.run(run.upstream_id)
            events = [(e["seq"], e["type"]) for e in upstream.get("events", [])][-12:]
            print("upstream:", upstream["status"], upstream.get("steps_completed"), events)
            print(
                "portal events:", list(run.events.order_by("seq").values_list("seq", "type"))[-12:]
            )
        raise
    return run


def assert_kept_promises(run, stack, *, status):
    upstream = stack.sim.run(run.upstream_id)
    per_key = stack.sim.state()["runs_per_idempotency_key"]
    assert per_key[run.idempotency_key] == 1
    assert run.status == status == upstream["status"]
    assert run.steps_completed == upstream["steps_completed"]
    assert run.charged_cents == run.steps_completed * run.price_cents
    wallet = wallet_summary(run.team)
    assert wallet.held_cents == 0
    assert wallet.spent_cents == run.charged_cents
    assert wallet.available_cents == 5000 - run.charged_cents


def stream_complete(run, timeout=30):
    """Settling uses Coasty's own record and may finish before the stream's last events are
    stored; the stream catches up on its own, ending with `done`."""
    wait_until(
        run.events.filter(type="done").exists, timeout=timeout, what="the stream's done event"
    )


def test_a_run_succeeds_and_is_charged_per_step(live_stack, team, bob):
    run = settled(launch(team, bob, task="[steps=4] Export the leads"))
    stream_complete(run)

    assert_kept_promises(run, live_stack, status=RunStatus.SUCCEEDED)
    assert run.steps_completed == 4 and run.charged_cents == 20
    assert run.events.filter(type="step").count() == 4
    assert run.result and run.result.get("text")
    # the terminal webhook came in signed and was applied or found already applied
    verdicts = set(run.webhook_deliveries.values_list("verdict", flat=True))
    assert verdicts and verdicts <= {
        WebhookDelivery.Verdict.ACCEPTED,
        WebhookDelivery.Verdict.DUPLICATE,
    }


def test_a_failing_run_is_charged_for_the_steps_it_did(live_stack, team, bob):
    run = settled(launch(team, bob, task="[fail=2] Export the leads"))
    assert_kept_promises(run, live_stack, status=RunStatus.FAILED)
    assert run.steps_completed == 2 and run.error


def test_a_paused_run_resumes_with_a_note_and_finishes(live_stack, team, bob):
    run = launch(team, bob, task="[pause] Log in to the CRM")

    def awaiting():
        run.refresh_from_db()
        return run.status == RunStatus.AWAITING_HUMAN

    wait_until(awaiting, what="the run to wait for a human")
    assert run.awaiting_human_reason
    services.run_request_resume(run=run, user=bob, note="Solved the captcha")

    run = settled(run)
    assert_kept_promises(run, live_stack, status=RunStatus.SUCCEEDED)
    stream_complete(run)
    resumed = run.events.get(type="resumed")
    assert resumed.data.get("note") == "Solved the captcha"


def test_cancelling_a_running_run_returns_the_unused_hold(live_stack, team, bob):
    run = launch(team, bob, task="[forever] Watch the dashboard", max_steps=200)

    def stepping():
        run.refresh_from_db()
        return run.steps_completed >= 1

    wait_until(stepping, what="the run to complete a step")
    services.run_request_cancel(run=run, user=bob)

    run = settled(run)
    assert_kept_promises(run, live_stack, status=RunStatus.CANCELLED)
    assert run.charged_cents < run.held_cents


def test_a_run_past_its_deadline_times_out(live_stack, team, bob):
    run = settled(launch(team, bob, task="[forever] Keep going", max_steps=500, deadline_seconds=3))
    assert_kept_promises(run, live_stack, status=RunStatus.TIMED_OUT)


def test_a_launch_the_wallet_cannot_cover_creates_nothing_anywhere(live_stack, team, make_member):
    top_up(team, 40)
    carol = make_member(team, "member")

    with pytest.raises(InsufficientFunds):
        launch(team, carol, max_steps=10)

    assert Run.objects.count() == 0
    assert live_stack.sim.state()["runs_total"] == 0
    assert wallet_summary(team).available_cents == 40


SUBMIT_FAULTS = {
    "lost_response": {"count": 2},
    "server_error": {"count": 2},
    "rate_limit": {"count": 2, "retry_after": 1},
    "in_flight": {"count": 2},
}
STREAM_AND_WEBHOOK_FAULTS = {
    "cut_stream": {"probability": 0.5},
    "webhook_duplicate": 1.0,
    "webhook_reorder": 1.0,
    "webhook_late": {"probability": 1.0, "delay_seconds": 1},
    "webhook_forged": 1.0,
    "webhook_stale": 1.0,
}


@pytest.mark.parametrize("fault", [*SUBMIT_FAULTS, *STREAM_AND_WEBHOOK_FAULTS])
def test_every_promise_holds_under_each_fault(live_stack, team, bob, fault):
    # given the simulator misbehaving in one way
    spec = {**SUBMIT_FAULTS, **STREAM_AND_WEBHOOK_FAULTS}[fault]
    live_stack.sim.set_faults({fault: spec}, seed=11)

    # when two runs are launched (one pauses and is resumed, so webhooks fire mid-run too)
    plain = launch(team, bob, task="[steps=5] Export the leads")
    paused = launch(team, bob, task="[pause] [steps=3] Log in")

    def awaiting():
        paused.refresh_from_db()
        return paused.status == RunStatus.AWAITING_HUMAN

    wait_until(awaiting, timeout=45, what="the paused run to wait for a human")
    services.run_request_resume(run=paused, user=bob, note="go on")

    # then both end exactly as Coasty says, charged once per step, holds released
    settled(plain, sim=live_stack.sim)
    settled(paused, sim=live_stack.sim)
    per_key = live_stack.sim.state()["runs_per_idempotency_key"]
    for run in (plain, paused):
        upstream = live_stack.sim.run(run.upstream_id)
        assert per_key[run.idempotency_key] == 1
        assert run.status == upstream["status"] == RunStatus.SUCCEEDED
        assert run.steps_completed == upstream["steps_completed"]
        assert run.charged_cents == run.steps_completed * run.price_cents
    wallet = wallet_summary(team)
    assert wallet.held_cents == 0
    assert wallet.spent_cents == plain.charged_cents + paused.charged_cents
    if fault in ("webhook_forged", "webhook_stale"):
        refused = WebhookDelivery.objects.filter(
            verdict__in=[WebhookDelivery.Verdict.BAD_SIGNATURE, WebhookDelivery.Verdict.STALE]
        )
        wait_until(refused.exists, timeout=10, what="the forged or stale delivery to be refused")


def test_a_run_cancelled_before_coasty_accepts_it_is_cancelled_upstream(live_stack, team, bob):
    # given a long run cancelled the moment it exists, before the worker has submitted it
    run = launch(team, bob, task="[steps=60] Long export", max_steps=100)
    services.run_request_cancel(run=run, user=bob)
    run = settled(run, sim=live_stack.sim)

    if run.upstream_id is None:
        # then, when no attempt had been sent yet, it ends here: nothing ever reaches Coasty
        # under its key, and the whole hold comes back
        assert run.status == RunStatus.CANCELLED and run.charged_cents == 0
        assert run.idempotency_key not in live_stack.sim.state()["runs_per_idempotency_key"]
        wallet = wallet_summary(run.team)
        assert (wallet.held_cents, wallet.spent_cents, wallet.available_cents) == (0, 0, 5000)
    else:
        # or, when the worker had sent it already: Coasty gets it, cancels it, and only the
        # steps it did are charged
        assert_kept_promises(run, live_stack, status=RunStatus.CANCELLED)
        assert run.steps_completed < 60
