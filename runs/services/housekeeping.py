"""The safety net, run every minute: whatever a crash or a lost task left behind."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from portal.core.queue import enqueue_on_commit
from runs import tasks
from runs.models import (
    LIVE_STATUSES,
    TERMINAL_STATUSES,
    UPSTREAM_TERMINAL_STATUSES,
    PendingAction,
    Run,
    RunStatus,
    runs_to_follow,
)
from runs.services.approval import runs_expire_approvals
from runs.services.settle import run_deadline

# After its deadline, a run that has not ended is polled once this much later.
DEADLINE_GRACE = dt.timedelta(seconds=60)
# A live run whose stream has been silent this long is polled.
SILENCE_LIMIT = dt.timedelta(minutes=10)


def runs_housekeeping() -> dict[str, int]:
    """The safety net, run every minute: whatever a crash or a lost task left behind.

    - pending runs due for another submit attempt are submitted again (same key);
    - live runs nobody follows get a follower;
    - pending runs past RUNS_PENDING_MAX_AGE_SECONDS are adopted or failed (run_submit);
    - ended runs that are not settled, runs Coasty answered 404 for, and live runs past their
      deadline (plus grace) or silent for long, are polled and settled (run_settle bounds
      how long each may take);
    - orphans (Coasty runs accepted after their run closed here) are cancelled upstream;
    - cancel and resume requests that did not reach Coasty are sent again;
    - runs that waited for approval longer than RUNS_APPROVAL_EXPIRY_SECONDS are rejected as
      "expired" (their holds released).
    """
    now = timezone.now()
    counts = {"submit": 0, "settle": 0, "cancel": 0, "resume": 0, "follow": 0}
    counts["expired"] = runs_expire_approvals(now=now)
    max_age = dt.timedelta(seconds=settings.RUNS_PENDING_MAX_AGE_SECONDS)
    due = (
        Run.objects.filter(status=RunStatus.PENDING)
        .annotate(due_since=Coalesce("decided_at", "created_at"))
        .filter(
            Q(submit_next_at__lte=now)
            | Q(submit_next_at__isnull=True, due_since__lte=now - dt.timedelta(seconds=30))
            # Past the age limit (counted from its approval, if it waited for one): adopted
            # or failed now, whatever its backoff says.
            | Q(due_since__lte=now - max_age)
        )
    )
    for run_id in due.values_list("pk", flat=True)[:500]:
        enqueue_on_commit(tasks.submit_run, str(run_id))
        counts["submit"] += 1
    unsettled = Run.objects.filter(
        Q(status__in=UPSTREAM_TERMINAL_STATUSES) | Q(upstream_missing_since__isnull=False),
        settled_at__isnull=True,
        upstream_id__isnull=False,
    ).values_list("pk", flat=True)
    overdue = []
    for run in Run.objects.filter(status__in=LIVE_STATUSES, upstream_id__isnull=False).only(
        "pk", "accepted_at", "deadline_seconds", "last_event_at", "upstream_missing_since"
    )[:2000]:
        if run.upstream_missing_since is not None:
            continue  # in `unsettled` already
        deadline = run_deadline(run)
        silent_since = run.last_event_at or run.accepted_at
        if (deadline and now > deadline + DEADLINE_GRACE) or (
            silent_since and now - silent_since > SILENCE_LIMIT
        ):
            overdue.append(run.pk)
    for run_id in [*unsettled[:500], *overdue]:
        enqueue_on_commit(tasks.settle_run, str(run_id))
        counts["settle"] += 1
    stale_actions = Run.objects.filter(
        pending_action__in=[PendingAction.CANCEL, PendingAction.RESUME], upstream_id__isnull=False
    ).exclude(status__in=TERMINAL_STATUSES)
    for run_id, action in stale_actions.values_list("pk", "pending_action")[:500]:
        task = (
            tasks.cancel_run_upstream
            if action == PendingAction.CANCEL
            else tasks.resume_run_upstream
        )
        enqueue_on_commit(task, str(run_id))
        counts[action] += 1
    orphans = Run.objects.filter(orphan_cancelled_at__isnull=True).exclude(orphan_upstream_id="")
    counts["orphan_cancel"] = 0
    for run_id in orphans.values_list("pk", flat=True)[:500]:
        enqueue_on_commit(tasks.cancel_orphan_upstream, str(run_id))
        counts["orphan_cancel"] += 1
    unfollowed = runs_to_follow().filter(  # live runs, and ended ones to backfill
        Q(follow_lease_until__isnull=True) | Q(follow_lease_until__lt=now)
    )
    if unfollowed.exists():
        enqueue_on_commit(tasks.follow_runs)
        counts["follow"] = 1
    return counts
