"""Runs driven through the services against a fake Coasty (the `coasty` fixture in
tests/runs/conftest.py): launched, accepted, fed step events and webhooks, and the wallet read."""

from dataclasses import dataclass, field

from runs import services
from runs.coasty import (
    CoastyIdempotencyKeyReused,
    CoastyInvalidState,
    CoastyNotFound,
    CoastyTransportError,
)
from runs.services import IncomingEvent, LaunchRequest


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
        if upstream_id in self.forgotten:
            raise CoastyNotFound("No such run", status=404, code="NOT_FOUND")
        return {k: v for k, v in self.runs[upstream_id].items() if k != "webhook_secret"}

    # --- what the convergence tests need (issue 12) ---
    forgotten: set = field(default_factory=set)  # runs GET answers 404 for
    bodies_by_key: dict = field(default_factory=dict)
    lookup_fails_with: Exception | None = None

    def idempotency_lookup(self, key):
        from runs.coasty import IdempotencyLookup

        self.calls.append(("lookup", key))
        if self.lookup_fails_with:
            raise self.lookup_fails_with
        if key not in self.creates_by_key:
            raise CoastyNotFound("Unknown idempotency key", status=404, code="NOT_FOUND")
        run = dict(self.runs[self.creates_by_key[key]])
        return IdempotencyLookup(status="completed", result=run, original_status=201)

    def cancel_run(self, upstream_id):
        self.calls.append(("cancel", upstream_id))
        run = self.runs[upstream_id]
        if run["status"] in ("succeeded", "failed", "cancelled", "timed_out"):
            raise CoastyInvalidState("Run already ended", status=409, code="INVALID_STATE")
        run["status"] = "cancelled"
        return dict(run)

    def create_lost(self, body, *, idempotency_key):
        """Coasty creates the run, the answer never arrives (nor the lookup's)."""
        self.calls.append(("create", idempotency_key, body))
        if idempotency_key in self.bodies_by_key and self.bodies_by_key[idempotency_key] != body:
            raise CoastyIdempotencyKeyReused(
                "Idempotency-Key reused with a different body",
                status=422,
                code="IDEMPOTENCY_KEY_REUSED",
            )
        self.bodies_by_key[idempotency_key] = body
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
        raise CoastyTransportError("connection reset", code="TRANSPORT_ERROR", retryable=True)

    def finish(self, upstream_id, status, steps, price=5):
        self.runs[upstream_id].update(
            status=status, steps_completed=steps, credits_charged=steps * price
        )


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


# Batches that between them move a run through everything an ingest sets on it: a step charged,
# a pause, a resume with text, a failure. The single-run and the several-runs ingest tests both
# check that what each sets in memory is what is stored.
INGEST_BATCHES = {
    "running-step": [IncomingEvent(1, "status", {"status": "running"}), *_step_events(2, 1)],
    "paused": [IncomingEvent(1, "awaiting_human", {"reason": "captcha"})],
    "resumed-text": [
        IncomingEvent(1, "awaiting_human", {"reason": "captcha"}),
        IncomingEvent(2, "resumed", {"note": "done"}),
        IncomingEvent(3, "text", {"text": "half way \u00e9"}),
    ],
    "failed-done": [
        *_step_events(1, 1),
        IncomingEvent(6, "error", {"error": {"code": "E", "message": "broke"}}),
        IncomingEvent(7, "done", {"status": "failed"}),
    ],
}


def _webhook(run, payload):
    """Deliver `payload` as Coasty would: signed with the run's own secret (FakeCoasty's)."""
    import json
    import time

    from runs.coasty import signature_header

    body = json.dumps(payload).encode()
    header = signature_header(f"whsec_{run.upstream_id}", int(time.time()), body)
    return services.webhook_receive(run_id=run.pk, body=body, headers={"Coasty-Signature": header})


def queued_tasks(prefix: str = "") -> list[tuple]:
    """The tasks waiting in django-q2's ORM queue, oldest first: [(function path, *args)], as
    the worker will run them (decoded from the signed packages)."""
    from django_q.models import OrmQ
    from django_q.signing import SignedPackage

    tasks = [
        SignedPackage.loads(p)
        for p in OrmQ.objects.order_by("id").values_list("payload", flat=True)
    ]
    return [(t["func"], *t["args"]) for t in tasks if t["func"].startswith(prefix)]
