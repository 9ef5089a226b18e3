"""What a run's changes tell people: one outbox event per pause and per end.

Recorded in the transaction that saves the change (the callers hold the run's lock), under a key
that names the change, so a replayed webhook, a second worker or a re-applied stream records
nothing new.
"""

from __future__ import annotations

from django.conf import settings

from portal.core.reversing import reverse_with_id
from portal.notifications.models import EventType
from portal.notifications.services import event_record
from runs.models import Run, RunStatus

STATUS_EVENTS: dict[str, EventType] = {
    RunStatus.AWAITING_HUMAN: EventType.RUN_AWAITING_HUMAN,
    RunStatus.SUCCEEDED: EventType.RUN_SUCCEEDED,
    RunStatus.FAILED: EventType.RUN_FAILED,
    RunStatus.SUBMIT_FAILED: EventType.RUN_FAILED,
    RunStatus.CANCELLED: EventType.RUN_CANCELLED,
    RunStatus.TIMED_OUT: EventType.RUN_TIMED_OUT,
}


def run_url(run: Run) -> str:
    """The run's page, absolute (reversed once per process, not once per event: `reverse`
    cost a webhook delivery more than its outbox row did)."""
    return settings.PORTAL_PUBLIC_URL.rstrip("/") + reverse_with_id("run_detail", run.pk)


def run_event_data(run: Run) -> dict[str, str | int]:
    """The public `data` of a run event: the contract's {run_id, team, status, task, url}
    but `team`, which fan-out adds from the event's team (one query less on the hot path),
    plus `charged_cents` so far when the caller loaded it (Slack messages show the cost)."""
    data: dict[str, str | int] = {
        "run_id": str(run.pk),
        "status": str(run.status),
        "task": run.task,
        "url": run_url(run),
    }
    # Never a query of its own: a field not loaded is absent from the instance's __dict__
    # (what get_deferred_fields() finds, without walking every field of the model).
    if "charged_cents" in run.__dict__:
        data["charged_cents"] = run.charged_cents
    return data


def run_status_notify(run: Run) -> None:
    """Record the event for the status `run` has just moved to, if it is one people hear about.

    An end happens once per run; a pause can happen many times, and each is named by where it
    happened (the stream's seq, else Coasty's timestamp for it).
    """
    event_type = STATUS_EVENTS.get(run.status)
    if event_type is None:
        return
    key = f"{event_type}:{run.pk}"
    if event_type == EventType.RUN_AWAITING_HUMAN:
        at = run.status_at.isoformat() if run.status_at else ""
        key = f"{key}:{run.status_seq}:{at}"
    event_record(
        event_type,
        team_id=run.team_id,
        subject=f"run:{run.pk}",
        key=key,
        data=run_event_data(run),
        user_id=run.created_by_id,
    )
