"""django-q2 entry points of notifications: take ids, call a service.

Services enqueue these by function, so services are imported inside the functions (a
module-level import would be a cycle: services -> tasks -> services).
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.utils import timezone
from django_q.tasks import async_task

from portal.core.queue import task_path

logger = logging.getLogger(__name__)

# A retry due this soon is waited for in the task (the first retry, within 10 s); later ones
# are handed over by the every-minute sweep.
SHORT_RETRY_SECONDS = 10
# An event the on-commit task has not fanned out after this long is the sweep's.
SWEEP_GRACE = timedelta(seconds=20)


def event_fan_out(key: str) -> int:
    from portal.notifications.services import event_fan_out as fan_out

    deliveries = fan_out(key=key)
    for delivery_id in deliveries:
        async_task(task_path(delivery_send), delivery_id=delivery_id)
    return len(deliveries)


def delivery_send(*, delivery_id: int) -> str:
    """Attempt a delivery; wait in place for a retry due within seconds, else leave it to the
    sweep."""
    from portal.notifications.delivery import delivery_attempt

    while True:
        delivery = delivery_attempt(delivery_id=delivery_id)
        if delivery is None:
            return "not due"
        if delivery.status != "pending":
            return str(delivery.status)
        wait = (delivery.next_attempt_at - timezone.now()).total_seconds()
        if wait > SHORT_RETRY_SECONDS:
            return f"retry in {round(wait)} s"
        time.sleep(max(0.0, wait))


def notifications_sweep() -> str:
    """The every-minute job: fan out events whose task was lost, send deliveries that are due
    (retries, and those of a worker that died mid-send once its lease ran out)."""
    from portal.notifications.delivery import due_deliveries, undispatched_event_keys

    events = 0
    for key in undispatched_event_keys(older_than=SWEEP_GRACE):
        try:
            event_fan_out(key=key)
            events += 1
        except Exception:
            logger.exception("Fan-out of %s failed; the next sweep tries again.", key)
    deliveries = due_deliveries()
    for delivery_id in deliveries:
        async_task(task_path(delivery_send), delivery_id=delivery_id)
    return f"fanned out {events} event(s), queued {len(deliveries)} delivery(ies)"
