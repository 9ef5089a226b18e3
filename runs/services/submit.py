"""Submitting a run to Coasty: exactly one upstream run per portal run, whatever fails."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

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
    CoastyNotFound,
    CoastyValidationError,
)
from runs.models import UPSTREAM_STATUSES, PendingAction, Run, RunStatus
from runs.services.launch import upstream_request_body
from runs.services.notify import run_status_notify
from runs.services.status import apply_status
from runs.services.upstream_data import refusal_text

logger = logging.getLogger(__name__)

# Coasty's answers that mean "this request will never succeed as it is": the run is marked
# submit_failed and its hold released. Anything else is retried under the same key.
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


def run_submit(*, run_id) -> Run:
    """Send a pending run to Coasty until Coasty has it, exactly once.

    Safe to call any number of times from any number of workers: the request carries the run's
    stored idempotency key and its deterministic body, so Coasty creates one run and replays it
    to everyone else; a lost response is collected from the idempotency lookup.
    """
    run = Run.objects.select_related("team").get(pk=run_id)
    if run.status != RunStatus.PENDING:
        return run
    Run.objects.filter(pk=run.pk).update(submit_attempts=F("submit_attempts") + 1)
    try:
        result = upstream.coasty().create_run_or_recover(
            upstream_request_body(run), idempotency_key=run.idempotency_key
        )
    except DETERMINISTIC_SUBMIT_ERRORS as exc:
        return run_mark_submit_failed(run_id=run.pk, error=exc)
    except CoastyError as exc:
        # Transient (network, 5xx, 429, in flight): try again later under the same key.
        attempts = run.submit_attempts + 1
        delay = SUBMIT_BACKOFF_SECONDS[min(attempts - 1, len(SUBMIT_BACKOFF_SECONDS) - 1)]
        Run.objects.filter(pk=run.pk, status=RunStatus.PENDING).update(
            submit_next_at=timezone.now() + dt.timedelta(seconds=delay),
            error=f"Submitting to Coasty, will retry: {exc}",
        )
        logger.warning(
            "run %s: submit attempt %s failed, retry in %ss: %s", run.pk, attempts, delay, exc
        )
        return run
    return run_mark_accepted(run_id=run.pk, answer=result.run)


def run_mark_accepted(*, run_id, answer: dict[str, Any]) -> Run:
    with transaction.atomic():
        # The row lock makes two workers that both got Coasty's answer apply it once.
        run = Run.objects.select_for_update().get(pk=run_id)
        if run.status != RunStatus.PENDING:
            return run
        run.upstream_id = str(answer["id"])
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


def run_mark_submit_failed(*, run_id, error: CoastyError) -> Run:
    """Coasty refused the run for good: record its words and give the hold back."""
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run_id)
        if run.status != RunStatus.PENDING:
            return run
        run.status = RunStatus.SUBMIT_FAILED
        run.error = refusal_text(error)  # with Coasty's error.details, when it sends them
        run.finished_at = run.settled_at = timezone.now()
        run.pending_action = PendingAction.NONE
        run.submit_next_at = None
        run.save()
        run_status_notify(run)
        billing.hold_release(reference=run.hold_reference, caused_by=f"run:{run.pk}")
    logger.warning("run %s: submit failed for good: %s", run.pk, error)
    return run
