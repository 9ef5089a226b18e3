"""Submitting a run to Coasty: exactly one upstream run per portal run, whatever fails, and no
upstream run Coasty holds that the portal does not know of.

The rules that keep a submission from orphaning an upstream run:

- the body is frozen at launch (`Run.submit_body`): every retry sends the same bytes;
- before a refusal fails a run, `GET /v1/idempotency/{key}` is asked: an earlier attempt whose
  answer was lost may have created the run, and then it is adopted;
- a spent key (`retry_with_same_idempotency_key: false`) is a refusal, never retried;
- no key is sent once Coasty's retention window (24 h) is near, nor after the pending age limit
  (RUNS_PENDING_MAX_AGE_SECONDS): the run is then adopted from the lookup or failed and
  released, so no pending run waits for ever;
- an acceptance for a run already closed here is an orphan: cancelled upstream, recorded as a
  discrepancy for the billing admins, logged.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from billing import services as billing
from portal.core.crypto import encrypt_secret
from portal.core.queue import enqueue_on_commit
from runs import tasks, upstream
from runs.coasty import (
    CoastyAuthError,
    CoastyError,
    CoastyIdempotencyKeyReused,
    CoastyInsufficientCredits,
    CoastyInvalidState,
    CoastyNotFound,
    CoastyValidationError,
    key_is_spent,
)
from runs.models import UPSTREAM_STATUSES, PendingAction, Run, RunStatus
from runs.services.launch import upstream_request_body
from runs.services.notify import run_status_notify
from runs.services.status import apply_status
from runs.services.upstream_data import refusal_text

logger = logging.getLogger(__name__)

# Coasty's answers that mean "this request will never succeed as it is": the run is marked
# submit_failed and its hold released (after the idempotency lookup found no run under its
# key). Anything else is retried under the same key, except a spent key (key_is_spent).
DETERMINISTIC_SUBMIT_ERRORS = (
    CoastyValidationError,
    CoastyInsufficientCredits,
    CoastyNotFound,
    CoastyAuthError,
    CoastyIdempotencyKeyReused,
)

# Backoff between submit attempts made by the housekeeping sweep (the client already retried
# inside each attempt).
SUBMIT_BACKOFF_SECONDS = (5, 15, 30, 60, 120, 300)


def submit_clock_start(run: Run) -> dt.datetime:
    """When the run became due for Coasty: its launch, or its approval (a run that waited a
    day for a manager has not yet sent its key, and must not be given up at once)."""
    return run.decided_at or run.created_at


def submit_deadline(run: Run) -> dt.datetime:
    """After this, no request carries the run's key: the pending age limit, and well inside
    Coasty's retention of the key (a key it forgot would create a second run)."""
    retention = dt.timedelta(seconds=settings.RUNS_COASTY_KEY_RETENTION_SECONDS)
    max_age = dt.timedelta(seconds=settings.RUNS_PENDING_MAX_AGE_SECONDS)
    return submit_clock_start(run) + min(max_age, retention * 0.9)


def give_up_at(run: Run) -> dt.datetime:
    """Past the submit deadline, Coasty is still asked (lookup only) while it cannot say whether
    it holds the run, for RUNS_PENDING_LOOKUP_GRACE_SECONDS at most and never once the key may
    be forgotten: then the run fails and its hold is released."""
    retention = dt.timedelta(seconds=settings.RUNS_COASTY_KEY_RETENTION_SECONDS)
    grace = dt.timedelta(seconds=settings.RUNS_PENDING_LOOKUP_GRACE_SECONDS)
    return min(submit_deadline(run) + grace, submit_clock_start(run) + retention * 0.95)


def run_submit(*, run_id) -> Run:
    """Send a pending run to Coasty until Coasty has it, exactly once.

    Safe to call any number of times from any number of workers: the request carries the run's
    stored idempotency key and its frozen body, so Coasty creates one run and replays it to
    everyone else; a lost response is collected from the idempotency lookup.
    """
    run = Run.objects.select_related("team").get(pk=run_id)
    if run.status != RunStatus.PENDING:
        return run
    if timezone.now() >= submit_deadline(run):
        return _resolve_without_sending(run)
    if run.pending_action == PendingAction.CANCEL:
        return _resolve_cancel(run)
    # Counted under the condition that the run is still pending: a cancel that closed it before
    # any attempt (run_request_cancel) is then never followed by a POST.
    if not Run.objects.filter(pk=run.pk, status=RunStatus.PENDING).update(
        submit_attempts=F("submit_attempts") + 1
    ):
        return Run.objects.get(pk=run.pk)
    try:
        result = upstream.coasty().create_run_or_recover(
            upstream_request_body(run), idempotency_key=run.idempotency_key
        )
    except DETERMINISTIC_SUBMIT_ERRORS as exc:
        return _refused(run, exc)
    except CoastyError as exc:
        if key_is_spent(exc):
            return _refused(run, exc)
        return _retry_later(run, exc)
    return run_mark_accepted(run_id=run.pk, answer=result.run)


def _retry_later(run: Run, exc: CoastyError) -> Run:
    """Transient (network, 5xx, 429, in flight): try again later under the same key."""
    attempts = Run.objects.filter(pk=run.pk).values_list("submit_attempts", flat=True).first() or 1
    delay = SUBMIT_BACKOFF_SECONDS[min(attempts - 1, len(SUBMIT_BACKOFF_SECONDS) - 1)]
    now = timezone.now()
    limit = submit_deadline(run) if now < submit_deadline(run) else give_up_at(run)
    next_at = min(now + dt.timedelta(seconds=delay), limit)
    Run.objects.filter(pk=run.pk, status=RunStatus.PENDING).update(
        submit_next_at=next_at, error=f"Submitting to Coasty, will retry: {exc}"[:2000]
    )
    logger.warning(
        "run %s: submit attempt %s failed, retry in %ss: %s", run.pk, attempts, delay, exc
    )
    return run


def _lookup_answer(run: Run) -> dict[str, Any] | str | None:
    """What Coasty holds under the run's key: the created run (a dict), None when it holds no
    run, "processing" while the original is still being created, "unknown" when Coasty could
    not be asked."""
    try:
        lookup = upstream.coasty().idempotency_lookup(run.idempotency_key)
    except CoastyNotFound:
        return None
    except CoastyError as exc:
        logger.warning("run %s: idempotency lookup failed: %s", run.pk, exc)
        return "unknown"
    if lookup.status == "processing":
        return "processing"
    status = lookup.original_status if lookup.original_status is not None else 200
    result = lookup.result or {}
    if 200 <= status < 300 and isinstance(result.get("id"), str):
        return result
    return None  # the key's original answer was a refusal: no run


def _resolve_cancel(run: Run) -> Run:
    """A cancel asked for after an attempt whose answer was lost: no new POST (it could start
    a run only to stop it). Coasty's lookup says whether it holds one: adopted (and then
    cancelled there, run_mark_accepted), or none and the run ends here with its hold back;
    while Coasty cannot say, asked again within the bound. A POST still in flight that Coasty
    accepts later is an orphan: cancelled upstream and recorded."""
    answer = _lookup_answer(run)
    if isinstance(answer, dict):
        return run_mark_accepted(run_id=run.pk, answer=answer)
    if answer is not None:
        return _retry_later(
            run, CoastyError(f"the idempotency lookup answered {answer!r}", code="LOOKUP")
        )
    with transaction.atomic():
        locked = Run.objects.select_for_update().get(pk=run.pk)
        if locked.status != RunStatus.PENDING:
            return locked
        now = timezone.now()
        locked.status = RunStatus.CANCELLED
        locked.error = "Cancelled before Coasty started it (it holds no run under its key)."
        locked.finished_at = locked.settled_at = locked.status_at = now
        locked.pending_action = PendingAction.NONE
        locked.submit_next_at = None
        locked.save()
        run_status_notify(locked)
        billing.hold_release(reference=locked.hold_reference, caused_by=f"run:{locked.pk}")
    logger.info("run %s: cancelled before Coasty started it", run.pk)
    return locked


def _refused(run: Run, exc: CoastyError) -> Run:
    """A permanent refusal. An earlier attempt whose outcome was unknown (a lost answer, a
    crash before its answer was stored) may have created the run all the same: Coasty's
    idempotency lookup says, and then the run is adopted instead of failed."""
    answer = _lookup_answer(run)
    if isinstance(answer, dict):
        logger.warning(
            "run %s: refused (%s), but Coasty holds run %s under its key: adopted",
            run.pk,
            exc.code or exc.status,
            answer["id"],
        )
        return run_mark_accepted(run_id=run.pk, answer=answer)
    if answer in ("processing", "unknown") and timezone.now() < submit_deadline(run):
        return _retry_later(run, exc)
    return run_mark_submit_failed(run_id=run.pk, error=exc)


def _resolve_without_sending(run: Run) -> Run:
    """A pending run past its age limit (or near the key's retention): no more POSTs. Adopted
    when Coasty holds a run under its key, else failed and its hold released; an acceptance
    that still comes later is an orphan (run_mark_accepted cancels it)."""
    answer = _lookup_answer(run)
    if isinstance(answer, dict):
        logger.warning(
            "run %s: past its age limit, Coasty holds run %s under its key: adopted",
            run.pk,
            answer["id"],
        )
        return run_mark_accepted(run_id=run.pk, answer=answer)
    if answer is not None and timezone.now() < give_up_at(run):
        # Coasty cannot say yet: ask again (lookup only), within the bound.
        return _retry_later(
            run, CoastyError(f"the idempotency lookup answered {answer!r}", code="LOOKUP")
        )
    minutes = round((timezone.now() - submit_clock_start(run)).total_seconds() / 60)
    reason = {
        None: "Coasty holds no run under its key",
        "processing": "Coasty was still creating it",
        "unknown": "Coasty could not be asked about it",
    }[answer]
    error = CoastyError(
        f"Coasty did not accept the run within {minutes} minute(s) ({reason}); given up.",
        code="PENDING_TOO_LONG",
    )
    return run_mark_submit_failed(run_id=run.pk, error=error)


def run_mark_accepted(*, run_id, answer: dict[str, Any]) -> Run:
    upstream_id = str(answer["id"])
    with transaction.atomic():
        # The row lock makes two workers that both got Coasty's answer apply it once.
        run = Run.objects.select_for_update().get(pk=run_id)
        if run.status != RunStatus.PENDING:
            if run.upstream_id is None or run.upstream_id != upstream_id:
                _orphan_record(run, upstream_id)
            return run
        run.upstream_id = upstream_id
        secret = answer.get("webhook_secret")
        if secret:
            run.webhook_secret_encrypted = encrypt_secret(secret)
        run.accepted_at = timezone.now()
        run.error = ""
        run.submit_next_at = None
        status = answer.get("status")
        if status not in UPSTREAM_STATUSES:
            # Accepted is at least queued: a status we do not know must not leave the run
            # pending with an upstream id (never followed, submitted again every minute).
            logger.warning("run %s: Coasty answered status %r; taken as queued", run.pk, status)
            status = RunStatus.QUEUED
        apply_status(run, status, at=None, force_forward=True)
        run.save()
        if run.pending_action == PendingAction.CANCEL:
            enqueue_on_commit(tasks.cancel_run_upstream, str(run.pk))
        if run.is_terminal:
            enqueue_on_commit(tasks.settle_run, str(run.pk))
        else:
            enqueue_on_commit(tasks.follow_runs)
    logger.info("run %s accepted by Coasty as %s", run.pk, run.upstream_id)
    return run


def _orphan_record(run: Run, upstream_id: str) -> None:
    """Coasty accepted a run that is closed here (the caller holds its row lock): cancel it
    upstream, and tell the billing admins, once per orphan."""
    if run.orphan_upstream_id == upstream_id:
        return  # recorded already (a repeated acceptance)
    logger.error(
        "run %s: Coasty accepted it as %s after it was closed here (%s): an orphan, "
        "cancelled upstream",
        run.pk,
        upstream_id,
        run.status,
    )
    run.orphan_upstream_id = upstream_id
    run.save(update_fields=["orphan_upstream_id"])
    billing.hold_discrepancy_open(
        reference=run.hold_reference,
        why=(
            f"Coasty accepted this run as {upstream_id} after it was closed here "
            f"({run.get_status_display().lower()}); the portal cancelled it upstream and "
            "charged the team nothing for it. Coasty may bill the organisation for steps it "
            "ran before the cancel."
        ),
        step_price_cents=run.price_cents,
        test_mode=bool(run.test_mode),
        caused_by=f"run:{run.pk}",
    )
    enqueue_on_commit(tasks.cancel_orphan_upstream, str(run.pk))


def run_cancel_orphan_upstream(*, run_id) -> Run:
    """Cancel, on Coasty, the orphan recorded on a run closed here. Safe to repeat."""
    run = Run.objects.get(pk=run_id)
    if not run.orphan_upstream_id or run.orphan_cancelled_at is not None:
        return run
    try:
        upstream.coasty().cancel_run(run.orphan_upstream_id)
    except (CoastyInvalidState, CoastyNotFound):
        pass  # it ended already (or Coasty forgot it): nothing left to stop
    except CoastyError as exc:
        logger.warning(
            "run %s: cancel of orphan %s failed: %s", run.pk, run.orphan_upstream_id, exc
        )
        return run  # housekeeping asks again
    Run.objects.filter(pk=run.pk, orphan_cancelled_at__isnull=True).update(
        orphan_cancelled_at=timezone.now()
    )
    logger.warning("run %s: orphan %s cancelled upstream", run.pk, run.orphan_upstream_id)
    return run


def run_check_orphan(*, run_id, upstream_id: str | None = None) -> Run:
    """A run closed here hears from Coasty (a webhook it cannot verify, having no secret):
    ask the idempotency lookup whether Coasty holds a run under its key; and, the key being
    perhaps forgotten already, ask Coasty about the run the webhook names (`upstream_id`),
    which is ours when its metadata carries this run's id (the frozen body put it there).
    An orphan found either way is recorded and cancelled."""
    run = Run.objects.get(pk=run_id)
    if run.status == RunStatus.PENDING or run.upstream_id or run.orphan_upstream_id:
        return run
    answer = _lookup_answer(run)
    if isinstance(answer, dict):
        return run_mark_accepted(run_id=run.pk, answer=answer)
    if not upstream_id:
        return run
    try:
        record = upstream.coasty().get_run(upstream_id)
    except CoastyError as exc:
        logger.info("run %s: Coasty run %s named by a webhook: %s", run.pk, upstream_id, exc)
        return run
    metadata = record.get("metadata")
    if isinstance(metadata, dict) and metadata.get("portal_run_id") == str(run.pk):
        return run_mark_accepted(run_id=run.pk, answer=record)
    return run


def run_mark_submit_failed(*, run_id, error: CoastyError) -> Run:
    """Coasty refused the run for good: record its words and give the hold back."""
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run_id)
        if run.status != RunStatus.PENDING:
            return run
        run.status = RunStatus.SUBMIT_FAILED
        if error.status:
            run.error = refusal_text(error)  # with Coasty's error.details, when it sends them
        else:
            run.error = f"Not submitted ({error.code}): {error.message}"[:2000]
        run.finished_at = run.settled_at = timezone.now()
        run.pending_action = PendingAction.NONE
        run.submit_next_at = None
        run.save()
        run_status_notify(run)
        billing.hold_release(reference=run.hold_reference, caused_by=f"run:{run.pk}")
    logger.warning("run %s: submit failed for good: %s", run.pk, error)
    return run
