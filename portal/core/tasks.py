"""django-q2 entry points of the core: take ids, load rows, call a service."""

import logging

from portal.core.rest.idempotency import idempotency_purge_expired

logger = logging.getLogger(__name__)


def purge_idempotency_keys() -> str:
    """The hourly job: delete Idempotency-Key records past their 24 hours."""
    deleted = idempotency_purge_expired()
    message = f"Purged {deleted} expired idempotency key(s)."
    logger.info(message)
    return message
