"""Approval above a threshold: a launch whose maximum cost is above the team's
`approval_above_cents` waits as `awaiting_approval`, holding its money, until a manager other
than the launcher approves it (then it is submitted like any launch) or rejects it (then it
ends `rejected` and its hold is released). Unanswered, it expires after RUNS_APPROVAL_EXPIRY_SECONDS (default 24 h).

Each decision takes the run's row lock, so two managers (or a double click, or a retry) decide
once: approving twice submits once; rejecting twice releases once.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing import services as billing
from portal.core.queue import enqueue_on_commit
from portal.notifications.models import EventType
from portal.notifications.services import event_record
from portal.teams.models import Membership, Role
from runs import tasks
from runs.models import Run, RunActivity, RunStatus
from runs.services.actions import RunActionRefused
from runs.services.activity import run_activity_record
from runs.services.notify import run_event_data

logger = logging.getLogger(__name__)

REASON_MAX = 2000
EXPIRED_REASON = "expired"


class NotAnApprover(Exception):
    """This person may not decide on this run (not a manager of its team, or its launcher)."""


def approval_expiry() -> dt.timedelta:
    return dt.timedelta(seconds=settings.RUNS_APPROVAL_EXPIRY_SECONDS)


def run_awaiting_approval_notify(run: Run) -> None:
    """Record run.awaiting_approval, once per run. Team-wide (no user): it is for the team's
    managers other than the launcher, whom delivery finds from the team."""
    event_record(
        EventType.RUN_AWAITING_APPROVAL,
        team_id=run.team_id,
        subject=f"run:{run.pk}",
        key=f"{EventType.RUN_AWAITING_APPROVAL}:{run.pk}",
        data=run_event_data(run),
    )


def may_decide(run: Run, user) -> bool:
    """Whether `user` may approve or reject `run`: a manager of its team, not its launcher."""
    if not getattr(user, "is_authenticated", False) or user.pk == run.created_by_id:
        return False
    return Membership.objects.filter(team_id=run.team_id, user=user, role=Role.MANAGER).exists()


def _check_decider(run: Run, user) -> None:
    if user is not None and user.pk == run.created_by_id:
        raise NotAnApprover("You launched this run: another manager of the team must decide.")
    if user is not None and not may_decide(run, user):
        raise NotAnApprover("Only the team's managers approve or reject runs.")


def run_approve(*, run: Run, user) -> Run:
    """Approve a run that awaits approval: it becomes pending and is submitted on commit,
    exactly like any launch (its hold is already placed). Approving again changes nothing."""
    _check_decider(run, user)
    with transaction.atomic():
        locked = Run.objects.select_for_update().get(pk=run.pk)
        if locked.status != RunStatus.AWAITING_APPROVAL:
            if locked.was_approved:
                return locked  # approved already (a double click, a retry): one submit
            raise RunActionRefused(_not_waiting(locked))
        locked.status = RunStatus.PENDING
        locked.decided_by = user
        locked.decided_at = timezone.now()
        locked.save(update_fields=["status", "decided_by", "decided_at"])
        run_activity_record(run=locked, kind=RunActivity.Kind.APPROVED, actor=user)
        enqueue_on_commit(tasks.submit_run, str(locked.pk))
    logger.info("run %s approved by %s", run.pk, user)
    return locked


def run_reject(*, run: Run, user, reason: str) -> Run:
    """Reject a run that awaits approval (user None: it expired): it ends `rejected`, nothing
    is sent to Coasty, and its hold is released. Rejecting again changes nothing."""
    reason = (reason or "").strip()
    if not reason:
        raise RunActionRefused("Say why the run is rejected; the launcher reads it.")
    if len(reason) > REASON_MAX:
        raise RunActionRefused(f"Keep the reason under {REASON_MAX:,} characters.")
    _check_decider(run, user)
    with transaction.atomic():
        locked = Run.objects.select_for_update().get(pk=run.pk)
        if locked.status != RunStatus.AWAITING_APPROVAL:
            if locked.status == RunStatus.REJECTED:
                return locked
            raise RunActionRefused(_not_waiting(locked))
        now = timezone.now()
        locked.status = RunStatus.REJECTED
        locked.decided_by = user
        locked.decided_at = now
        locked.decision_reason = reason
        # Treated like submit_failed for settling: nothing ran, so nothing is left to settle.
        locked.finished_at = locked.settled_at = now
        locked.save(
            update_fields=[
                "status",
                "decided_by",
                "decided_at",
                "decision_reason",
                "finished_at",
                "settled_at",
            ]
        )
        # The timeline names who decided (an expiry has no actor) and why.
        run_activity_record(
            run=locked, kind=RunActivity.Kind.REJECTED, actor=user, data={"reason": reason}
        )
        billing.hold_release(
            reference=locked.hold_reference,
            caused_by=user if user is not None else "job:expire_approvals",
        )
    logger.info("run %s rejected by %s: %s", run.pk, user or "expiry", reason)
    return locked


def runs_expire_approvals(*, now: dt.datetime | None = None) -> int:
    """Reject, with the reason "expired", every run that has waited for approval longer
    than RUNS_APPROVAL_EXPIRY_SECONDS (default 24 h). Safe to run from any number of workers."""
    cutoff = (now or timezone.now()) - approval_expiry()
    expired = 0
    waiting = Run.objects.filter(status=RunStatus.AWAITING_APPROVAL, created_at__lte=cutoff)
    for run in waiting.only("pk", "created_by_id")[:500]:
        try:
            run_reject(run=run, user=None, reason=EXPIRED_REASON)
        except RunActionRefused:
            continue  # a manager decided meanwhile
        expired += 1
    return expired


def _not_waiting(run: Run) -> str:
    if run.status == RunStatus.REJECTED:
        return "This run was already rejected."
    if run.was_approved:
        return "This run was already approved."
    return f"This run does not wait for approval (it is {run.get_status_display().lower()})."
