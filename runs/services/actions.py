"""What people ask of a run (cancel, resume), and carrying it to Coasty."""

from __future__ import annotations

import logging
import time

from django.db import transaction
from django.utils import timezone

from billing import services as billing
from portal.core.queue import enqueue_on_commit
from runs import tasks, upstream
from runs.coasty import CoastyError, CoastyInvalidState
from runs.models import PendingAction, Run, RunActivity, RunStatus
from runs.services.activity import run_activity_record
from runs.services.notify import run_status_notify
from runs.services.status import apply_status

logger = logging.getLogger(__name__)


class RunActionRefused(Exception):
    """The run's state does not allow this action; the message says why."""


def run_request_cancel(*, run: Run, user) -> Run:
    """Ask for a cancel; the worker carries it to Coasty with its own retries."""
    with transaction.atomic():
        locked = Run.objects.select_for_update().get(pk=run.pk)
        if locked.is_terminal:
            raise RunActionRefused(
                f"This run has already ended ({locked.get_status_display().lower()})."
            )
        if locked.pending_action == PendingAction.CANCEL:
            return locked  # asked twice: one cancel
        never_sent = locked.status == RunStatus.PENDING and locked.submit_attempts == 0
        if locked.status == RunStatus.AWAITING_APPROVAL or never_sent:
            # Never sent to Coasty (waiting for approval; or pending with no attempt yet, and
            # run_submit counts an attempt only on a run still pending, under this row lock, so
            # nothing ever will be): it ends here, and its hold goes back.
            _cancel_before_submit(locked, user)
            return locked
        locked.pending_action = PendingAction.CANCEL
        locked.save(update_fields=["pending_action"])
        run_activity_record(run=locked, kind=RunActivity.Kind.CANCEL_REQUESTED, actor=user)
        if locked.upstream_id:
            enqueue_on_commit(tasks.cancel_run_upstream, str(locked.pk))
        else:
            # Sent already, answer unknown: the submit (same key) learns whether Coasty has it;
            # accepted, it is cancelled there (run_mark_accepted); refused or given up, it ends
            # here. Asked now rather than at the next backoff.
            enqueue_on_commit(tasks.submit_run, str(locked.pk))
    logger.info("run %s: cancel requested by %s", run.pk, user)
    return locked


def _cancel_before_submit(run: Run, user) -> None:
    """Close a run that never reached Coasty (the caller holds its row lock)."""
    now = timezone.now()
    before_approval = run.status == RunStatus.AWAITING_APPROVAL
    run.status = RunStatus.CANCELLED
    run.error = (
        "Cancelled while it waited for approval."
        if before_approval
        else "Cancelled before it was sent to Coasty."
    )
    run.finished_at = run.settled_at = now
    run.status_at = now
    run.pending_action = PendingAction.NONE
    run.submit_next_at = None
    run.save()
    # Who ended it, as for a cancel that reaches Coasty: the timeline and the API name them.
    run_activity_record(run=run, kind=RunActivity.Kind.CANCEL_REQUESTED, actor=user)
    run_status_notify(run)
    billing.hold_release(reference=run.hold_reference, caused_by=user or f"run:{run.pk}")


def run_request_resume(*, run: Run, user, note: str = "") -> Run:
    with transaction.atomic():
        locked = Run.objects.select_for_update().get(pk=run.pk)
        if locked.status != RunStatus.AWAITING_HUMAN:
            raise RunActionRefused(
                f"Only a run that is waiting for a human can be resumed; this one is "
                f"{locked.get_status_display().lower()}."
            )
        if locked.pending_action == PendingAction.CANCEL:
            raise RunActionRefused("A cancel is already requested for this run.")
        if locked.pending_action:
            return locked  # asked twice: one resume
        locked.pending_action = PendingAction.RESUME
        locked.resume_note = note
        # Coasty's `resumed` event, when it comes, names this person (services.ingest).
        locked.resume_requested_by = user if getattr(user, "is_authenticated", False) else None
        locked.save(update_fields=["pending_action", "resume_note", "resume_requested_by"])
        enqueue_on_commit(tasks.resume_run_upstream, str(locked.pk))
    logger.info("run %s: resume requested by %s", run.pk, user)
    return locked


def run_cancel_upstream(*, run_id) -> Run:
    run = Run.objects.get(pk=run_id)
    if run.pending_action != PendingAction.CANCEL or not run.upstream_id or run.is_terminal:
        return run
    try:
        answer = _retrying(lambda: upstream.coasty().cancel_run(run.upstream_id))
    except CoastyInvalidState:
        # Already ended upstream (or the cancel went through and its answer was lost):
        # settle from Coasty's own record.
        _clear_pending(run.pk, PendingAction.CANCEL)
        enqueue_on_commit(tasks.settle_run, str(run.pk))
        return run
    with transaction.atomic():
        locked = Run.objects.select_for_update().get(pk=run.pk)
        apply_status(locked, str(answer.get("status") or ""), at=None)
        locked.save()
        if locked.is_terminal and locked.settled_at is None:
            enqueue_on_commit(tasks.settle_run, str(locked.pk))
    return locked


def run_resume_upstream(*, run_id) -> Run:
    run = Run.objects.get(pk=run_id)
    if run.pending_action != PendingAction.RESUME or not run.upstream_id:
        logger.info("run %s: no resume to send (pending %r)", run.pk, run.pending_action)
        return run
    try:
        _retrying(
            lambda: upstream.coasty().resume_run(run.upstream_id, note=run.resume_note or None)
        )
    except CoastyInvalidState as exc:
        # Not waiting any more: resumed already (a lost answer) or ended meanwhile.
        logger.info("run %s: resume refused as %s; nothing to resume", run.pk, exc.code)
        _clear_pending(run.pk, PendingAction.RESUME)
        return run
    logger.info("run %s: resumed on Coasty", run.pk)
    # The stream's `resumed` event moves the status; until then the page says "Resume requested".
    return run


def _retrying(call, *, attempts: int = 3, sleep=time.sleep):
    """Cancel and resume carry no idempotency key, so the client does not retry them; they are
    safe to repeat all the same (a repeat answers INVALID_STATE, handled above). A few quick
    tries here, and the housekeeping sweep keeps asking while the request stays pending."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except CoastyError as exc:
            if not exc.retryable or attempt == attempts:
                raise
            sleep(min(exc.retry_after or 2 ** (attempt - 1), 10))
    raise AssertionError("unreachable")


def _clear_pending(run_id, action: str) -> None:
    Run.objects.filter(pk=run_id, pending_action=action).update(pending_action=PendingAction.NONE)
