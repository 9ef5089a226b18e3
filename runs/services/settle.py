"""Settling a run's money from Coasty's own record of it, once it has ended."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from billing import services as billing
from billing.selectors import hold_captured_cents
from runs import upstream
from runs.models import UPSTREAM_TERMINAL_STATUSES, Run, RunStatus
from runs.services.status import apply_status, parse_at
from runs.services.upstream_data import without_nul

logger = logging.getLogger(__name__)


def run_settle(*, run_id) -> Run:
    """Settle the money of a run that ended, from Coasty's own record of it. Idempotent.

    Captures any step still uncharged up to Coasty's steps_completed (never beyond the hold),
    releases the rest of the hold, and records the reconciliation result.
    """
    run = Run.objects.get(pk=run_id)
    if run.settled_at is not None:
        return run
    if run.status == RunStatus.SUBMIT_FAILED or not run.upstream_id:
        return run
    # Outside any transaction: never hold locks on I/O.
    record = without_nul(upstream.coasty().get_run(run.upstream_id))
    upstream_status = str(record.get("status") or "")
    if upstream_status not in UPSTREAM_TERMINAL_STATUSES:
        logger.info("run %s: not settled, Coasty says it is still %s", run.pk, upstream_status)
        return run
    steps = _non_negative_int(record.get("steps_completed"))
    credits = _non_negative_int(record.get("credits_charged"))
    with transaction.atomic():
        locked = Run.objects.select_for_update().get(pk=run.pk)
        if locked.settled_at is not None:
            return locked
        apply_status(locked, upstream_status, at=parse_at(record.get("finished_at")))
        billing.hold_settle(
            reference=locked.hold_reference,
            steps_completed=min(steps, locked.max_steps),
            step_price_cents=locked.price_cents,
            upstream_credits_charged=credits,
            upstream_test_mode=upstream.upstream_is_test_mode(),
            caused_by=f"run:{locked.pk}",
        )
        locked.steps_completed = max(locked.steps_completed, min(steps, locked.max_steps))
        locked.charged_cents = hold_captured_cents(locked.hold_reference)
        locked.upstream_steps_completed = steps
        locked.upstream_credits_charged = credits
        if isinstance(record.get("result"), dict):
            locked.result = {**(locked.result or {}), **record["result"]}
        if isinstance(record.get("error"), dict) and not locked.error:
            locked.error = str(record["error"].get("message") or record["error"])[:2000]
        locked.settled_at = timezone.now()
        locked.save()
    logger.info(
        "run %s settled: %s steps, %s¢ charged, %s¢ released",
        run.pk,
        locked.steps_completed,
        locked.charged_cents,
        locked.held_cents - locked.charged_cents,
    )
    return locked


def _non_negative_int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
