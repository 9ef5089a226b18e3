"""django-q2 entry points: take ids, load rows, call a service.

Services enqueue these by function, so the services are imported inside the functions here (a
module-level import would be a cycle: services -> tasks -> services).
"""

import logging

logger = logging.getLogger(__name__)


def reconcile_billing() -> str:
    """The every-15-minutes job: re-check finished holds against Coasty's figures."""
    from billing.services import reconcile_finished_holds

    summary = reconcile_finished_holds(caused_by="job:reconcile_billing")
    message = (
        f"Reconciled {summary.checked} hold(s): {summary.matched} matched, "
        f"{summary.discrepancies} with a discrepancy; {summary.skipped} without figures"
        + (f"; {summary.failed} failed (see the log)." if summary.failed else ".")
    )
    if not summary.complete:
        # Out of time before the end of the list: the next job resumes after the stored
        # cursor, now rather than at the next schedule.
        from portal.core.queue import enqueue_on_commit

        message += " Not at the end of the list yet: continuing."
        enqueue_on_commit(reconcile_billing)
    logger.info(message)
    return message
