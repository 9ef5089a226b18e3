"""How a run's status moves: forward only, on Coasty's own words, newest proof wins."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from runs.models import (
    STATUS_RANK,
    TERMINAL_STATUSES,
    UPSTREAM_STATUSES,
    PendingAction,
    Run,
    RunStatus,
)
from runs.services.notify import run_status_notify


def apply_status(
    run: Run,
    status: str,
    *,
    seq: int | None = None,
    at: dt.datetime | None = None,
    reason: str = "",
    force_forward: bool = False,
) -> bool:
    """Move `run` (in memory) to `status` if that is forward; return whether it moved.

    Terminal states are final. A lower rank never wins. Between running and awaiting_human the
    newer change wins, and "newer" needs proof from upstream's order: a higher stream seq and,
    when both sides carry one, a later Coasty timestamp. A change with neither proof is ignored
    (the stream will bring it).
    """
    if run.status in TERMINAL_STATUSES or status not in UPSTREAM_STATUSES:
        # Only Coasty's own statuses move a run: an unknown word, or the portal's pending and
        # submit_failed (which settle does not handle) arriving from upstream, changes nothing.
        return False
    current, new = STATUS_RANK[RunStatus(run.status)], STATUS_RANK[RunStatus(status)]
    if new < current:
        return False
    if new == current and status == run.status:
        if seq is not None and seq > run.status_seq:
            run.status_seq = seq
        return False
    if new == current and not force_forward:
        # Newer by every proof we have: the stream's seq, and Coasty's own timestamp (a webhook
        # applied first has no seq, so an older stream event must also lose on time).
        if seq is None and at is None:
            return False
        if seq is not None and seq <= run.status_seq:
            return False
        if at is not None and run.status_at is not None and at <= run.status_at:
            return False
    now = timezone.now()
    run.status = status
    if seq is not None:
        run.status_seq = max(run.status_seq, seq)
    run.status_at = at or now
    if status == RunStatus.AWAITING_HUMAN:
        run.awaiting_human_reason = reason or run.awaiting_human_reason
    elif status == RunStatus.RUNNING and run.pending_action == PendingAction.RESUME:
        run.pending_action = PendingAction.NONE
    if status in TERMINAL_STATUSES:
        run.finished_at = at or now
        run.pending_action = PendingAction.NONE
    # The callers save the run in the transaction they hold its lock in; the outbox row
    # commits (or rolls back) with it.
    run_status_notify(run)
    return True


def parse_at(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = parse_datetime(value)
    except ValueError:  # well-formed but impossible, like "2026-02-30T00:00:00Z": no time
        return None
    if parsed is not None and timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, dt.UTC)
    return parsed
