"""django-q2 entry points: take ids, load rows, call a service."""

import logging

from portal.rest.idempotency import idempotency_purge_expired

logger = logging.getLogger(__name__)

PURGE_SCHEDULE_NAME = "api: purge expired idempotency keys"


def purge_idempotency_keys() -> str:
    """The hourly job: delete Idempotency-Key records past their 24 hours."""
    deleted = idempotency_purge_expired()
    message = f"Purged {deleted} expired idempotency key(s)."
    logger.info(message)
    return message
