"""Settling a run's money from Coasty's own record of it, once it has ended; and, within a
bound, without that record when Coasty cannot give it."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing import services as billing
from billing.selectors import hold_captured_cents
from runs import upstream
from runs.coasty import CoastyError, CoastyInvalidState, CoastyNotFound
from runs.models import UPSTREAM_TERMINAL_STATUSES, Run, RunStatus
from runs.services.status import apply_status, parse_at
from runs.services.upstream_data import without_nul

logger = logging.getLogger(__name__)

# Saved by the money's own transaction: what settling changes on the run, apart from the
# result and the error Coasty sent (saved after, on their own, so bad data cannot block money).
_MONEY_FIELDS = [
    "status",
    "status_seq",
    "status_at",
    "finished_at",
    "pending_action",
    "awaiting_human_reason",
    "steps_completed",
    "charged_cents",
    "upstream_steps_completed",
    "upstream_credits_charged",
    "upstream_missing_since",
    "lost_upstream_at",
    "settled_at",
    "error",
]


def run_deadline(run: Run) -> dt.datetime | None:
    """When Coasty's wall-clock budget for the run ends (its own, or Coasty's ceiling)."""
    if run.accepted_at is None:
        return None
    seconds = run.deadline_seconds or settings.RUNS_DEFAULT_DEADLINE_SECONDS
    return run.accepted_at + dt.timedelta(seconds=seconds)


def run_settle(*, run_id) -> Run:
    """Settle the money of a run that ended, from Coasty's own record of it. Idempotent.

    Charges Coasty's count of steps (never beyond the hold), releases the rest of the hold, and
    records the reconciliation result. When Coasty no longer knows the run (404 for
    RUNS_LOST_UPSTREAM_AFTER_SECONDS), or the run has not ended long past its deadline, the run
    is settled on what was captured and a discrepancy opened: never left held, never guessed.
    """
    run = Run.objects.get(pk=run_id)
    if run.settled_at is not None:
        return run
    if run.status == RunStatus.SUBMIT_FAILED or not run.upstream_id:
        return run
    # Outside any transaction: never hold locks on I/O.
    try:
        record = without_nul(upstream.coasty().get_run(run.upstream_id))
    except CoastyNotFound:
        return _upstream_missing(run)
    except CoastyError as exc:
        return _upstream_unreachable(run, exc)
    if run.upstream_missing_since is not None:
        Run.objects.filter(pk=run.pk).update(upstream_missing_since=None)
        run.upstream_missing_since = None
    upstream_status = str(record.get("status") or "")
    if upstream_status not in UPSTREAM_TERMINAL_STATUSES:
        return _still_live(run, upstream_status)
    steps = _non_negative_int(record.get("steps_completed"))
    credits = _non_negative_int(record.get("credits_charged"))
    # The money in its own transaction: nothing Coasty wrote in `result` can block it.
    with transaction.atomic():
        locked = Run.objects.select_for_update().get(pk=run.pk)
        if locked.settled_at is not None:
            return locked
        apply_status(locked, upstream_status, at=parse_at(record.get("finished_at")))
        charged_steps = min(steps, locked.max_steps)
        billing.hold_settle(
            reference=locked.hold_reference,
            steps_completed=charged_steps,
            step_price_cents=locked.price_cents,
            upstream_credits_charged=credits,
            upstream_test_mode=_test_mode(locked),
            caused_by=f"run:{locked.pk}",
        )
        locked.steps_completed = max(locked.steps_completed, charged_steps)
        locked.charged_cents = hold_captured_cents(locked.hold_reference)
        locked.upstream_steps_completed = steps
        locked.upstream_credits_charged = credits
        if isinstance(record.get("error"), dict) and not locked.error:
            locked.error = str(record["error"].get("message") or record["error"])[:2000]
        locked.settled_at = timezone.now()
        locked.save(update_fields=_MONEY_FIELDS)
    _store_result(locked, record.get("result"))
    logger.info(
        "run %s settled: %s steps, %s¢ charged, %s¢ released",
        run.pk,
        locked.steps_completed,
        locked.charged_cents,
        locked.held_cents - locked.charged_cents,
    )
    return locked


def _store_result(run: Run, result: Any) -> None:
    """The result Coasty reported, saved after the money and on its own: a value the database
    refuses is logged and dropped, the settlement stands."""
    if not isinstance(result, dict):
        return
    try:
        with transaction.atomic():
            locked = Run.objects.select_for_update().get(pk=run.pk)
            locked.result = {**(locked.result or {}), **result}
            locked.save(update_fields=["result"])
            run.result = locked.result
    except Exception:
        logger.exception("run %s: settled, but Coasty's result could not be stored", run.pk)


def _test_mode(run: Run) -> bool:
    """The run's own mode, stored at launch; today's key only for runs from before that."""
    return run.test_mode if run.test_mode is not None else upstream.upstream_is_test_mode()


def _upstream_missing(run: Run) -> Run:
    """Coasty answered 404 for the run: purged, or the key switched between test and live.
    Noted at the first 404; settled on what was captured once it has lasted the grace."""
    now = timezone.now()
    Run.objects.filter(pk=run.pk, upstream_missing_since__isnull=True).update(
        upstream_missing_since=now
    )
    since = Run.objects.values_list("upstream_missing_since", flat=True).get(pk=run.pk) or now
    grace = dt.timedelta(seconds=settings.RUNS_LOST_UPSTREAM_AFTER_SECONDS)
    if now - since < grace:
        logger.warning("run %s: Coasty does not know %s (since %s)", run.pk, run.upstream_id, since)
        return run
    return run_settle_lost(
        run_id=run.pk,
        why=(
            f"Coasty no longer knows run {run.upstream_id} (404 since "
            f"{since:%Y-%m-%d %H:%M:%S} UTC): settled on the steps the portal captured; "
            "Coasty's own count could not be checked."
        ),
    )


def _upstream_unreachable(run: Run, exc: CoastyError) -> Run:
    """Coasty did not answer for the run (5xx, timeout, a refused key). Asked again by the
    next settle until the run is RUNS_OVERDUE_SETTLE_AFTER_SECONDS past its deadline; then it
    is settled on what was captured, so an outage that never ends cannot keep money held."""
    deadline = run_deadline(run)
    bound = dt.timedelta(seconds=settings.RUNS_OVERDUE_SETTLE_AFTER_SECONDS)
    if deadline is None or timezone.now() - deadline < bound:
        raise exc
    if not run.is_terminal:
        _cancel_quietly(run)  # should Coasty still be running it, and hear us after all
    return run_settle_lost(
        run_id=run.pk,
        why=(
            f"Coasty did not answer for run {run.upstream_id} ({exc}) until "
            f"{round(bound.total_seconds() / 60)} minute(s) after the run's deadline: settled "
            "on the steps the portal captured; Coasty's own count could not be checked."
        ),
    )


def _still_live(run: Run, upstream_status: str) -> Run:
    """Coasty says the run goes on. Past its deadline it is cancelled upstream, and past the
    bound it is settled on what was captured, so no run keeps its hold for ever."""
    deadline = run_deadline(run)
    now = timezone.now()
    if deadline is None:
        logger.info("run %s: not settled, Coasty says it is still %r", run.pk, upstream_status)
        return run
    overdue = now - deadline
    if overdue >= dt.timedelta(seconds=settings.RUNS_OVERDUE_SETTLE_AFTER_SECONDS):
        _cancel_quietly(run)
        return run_settle_lost(
            run_id=run.pk,
            why=(
                f"Coasty still said {upstream_status!r} {round(overdue.total_seconds() / 60)} "
                "minute(s) after the run's deadline: cancelled, and settled on the steps the "
                "portal captured; Coasty's final count could not be checked."
            ),
        )
    if overdue >= dt.timedelta(seconds=settings.RUNS_OVERDUE_CANCEL_AFTER_SECONDS):
        _cancel_quietly(run)
    logger.info("run %s: not settled, Coasty says it is still %s", run.pk, upstream_status)
    return run


def _cancel_quietly(run: Run) -> None:
    try:
        upstream.coasty().cancel_run(str(run.upstream_id))
    except (CoastyInvalidState, CoastyNotFound):
        pass
    except CoastyError as exc:
        logger.warning("run %s: cancel of an overdue run failed: %s", run.pk, exc)


def run_settle_lost(*, run_id, why: str) -> Run:
    """Settle a run on what the portal captured, mark it lost upstream, open a discrepancy.
    Idempotent. A run that had not ended here ends as failed, with `why` as its error."""
    with transaction.atomic():
        locked = Run.objects.select_for_update().get(pk=run_id)
        if locked.settled_at is not None:
            return locked
        if not locked.is_terminal:
            apply_status(locked, RunStatus.FAILED, at=None)
            locked.error = f"Lost upstream: {why}"[:2000]
        billing.hold_settle_unverified(
            reference=locked.hold_reference,
            why=why,
            step_price_cents=locked.price_cents,
            test_mode=_test_mode(locked),
            caused_by=f"run:{locked.pk}",
        )
        now = timezone.now()
        locked.charged_cents = hold_captured_cents(locked.hold_reference)
        locked.lost_upstream_at = now
        locked.settled_at = now
        locked.save(update_fields=_MONEY_FIELDS)
    logger.error("run %s settled lost upstream: %s", locked.pk, why)
    return locked


def _non_negative_int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
