"""django-q2 entry points: take ids, call a service. Every one is safe to run twice.

Services enqueue these by function (`enqueue_on_commit(tasks.settle_run, run_id)`), so this
module imports the services inside each function: a module-level import would be a cycle
(services -> tasks -> services).
"""

import logging

from portal.core.queue import enqueue_on_commit

logger = logging.getLogger(__name__)


def submit_run(run_id: str) -> None:
    from runs.services import run_submit

    run_submit(run_id=run_id)


def follow_runs() -> str:
    from runs.follow import follow_runs_once, runs_needing_follower

    report = follow_runs_once()
    if report is None:
        # The followers running now claim new runs every second; nothing to do here.
        return "another follower holds every slot"
    # Hand over, checked after this follower let go of its slot and leases, so that a run
    # accepted while it was finishing is not left behind: the next follower resumes each
    # stream after its last stored seq.
    if runs_needing_follower():
        enqueue_on_commit(follow_runs)
    return f"followed {report.runs_followed} runs, {report.events} events"


def settle_run(run_id: str, events: list[str] | None = None) -> None:
    """Fan out `events` (keys of outbox events the run's ending recorded), then settle the run.

    A webhook that ends a run queues this one task instead of a fan-out per event and a settle
    (runs.services.webhooks): one queue row per delivery. The people hear first; a fan-out
    that fails is left to the notifications sweep and never holds the money back. Both halves
    are idempotent, so a retried task repeats nothing.
    """
    from portal.notifications.tasks import event_fan_out
    from runs.services import run_settle

    for key in events or ():
        try:
            event_fan_out(key)
        except Exception:
            logger.exception("Fan-out of %s failed; the notifications sweep tries again.", key)
    run_settle(run_id=run_id)


def cancel_run_upstream(run_id: str) -> None:
    from runs.services import run_cancel_upstream

    run_cancel_upstream(run_id=run_id)


def cancel_orphan_upstream(run_id: str) -> None:
    from runs.services import run_cancel_orphan_upstream

    run_cancel_orphan_upstream(run_id=run_id)


def check_orphan(run_id: str, upstream_id: str | None = None) -> None:
    from runs.services import run_check_orphan

    run_check_orphan(run_id=run_id, upstream_id=upstream_id)


def resume_run_upstream(run_id: str) -> None:
    from runs.services import run_resume_upstream

    run_resume_upstream(run_id=run_id)


def housekeeping() -> dict[str, int]:
    from runs.services import runs_housekeeping

    return runs_housekeeping()
