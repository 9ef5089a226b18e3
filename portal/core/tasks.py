"""django-q2 entry points of the core: take ids, load rows, call a service."""

import logging

from portal.core.logins import login_failures_purge
from portal.core.rest.idempotency import idempotency_purge_expired

logger = logging.getLogger(__name__)


def purge_idempotency_keys() -> str:
    """The hourly job: delete Idempotency-Key records past their 24 hours."""
    deleted = idempotency_purge_expired()
    message = f"Purged {deleted} expired idempotency key(s)."
    logger.info(message)
    return message


def purge_login_failures() -> str:
    """The daily job: forget failed logins older than LOGIN_FAILURE_LOG_DAYS, so guesses at
    random usernames cannot grow the table for ever."""
    deleted = login_failures_purge()
    message = f"Purged {deleted} old failed login record(s)."
    logger.info(message)
    return message
