"""Where the portal meets Coasty: the configured client, and whether webhooks can reach us."""

import ipaddress
import logging
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.urls import reverse

from runs.coasty import CoastyClient, RetryPolicy

logger = logging.getLogger(__name__)


def client_from_settings(**overrides: Any) -> CoastyClient:
    """A client configured from settings (COASTY_BASE_URL, COASTY_API_KEY, the timeouts)."""
    options: dict[str, Any] = {
        "connect_timeout": settings.COASTY_CONNECT_TIMEOUT,
        "read_timeout": settings.COASTY_READ_TIMEOUT,
    }
    options.update(overrides)
    return CoastyClient(settings.COASTY_BASE_URL, settings.COASTY_API_KEY, **options)


def coasty() -> CoastyClient:
    """The client the worker uses: full retry policy, one per process and configuration."""
    return _client(settings.COASTY_BASE_URL, settings.COASTY_API_KEY, quick=False)


def coasty_quick() -> CoastyClient:
    """One attempt, short timeouts: for reads a person waits on (the machine picker) and for
    checks that come round again anyway (reconciliation).
    When Coasty is slow the page falls back at once instead of retrying for a minute."""
    return _client(settings.COASTY_BASE_URL, settings.COASTY_API_KEY, quick=True)


@lru_cache(maxsize=8)
def _client(base_url: str, api_key: str, *, quick: bool) -> CoastyClient:
    # One client per process keeps connections alive between calls. Worker processes are forked
    # before their first task, so no pool is shared across a fork.
    if quick:
        return client_from_settings(
            connect_timeout=2.0, read_timeout=4.0, retry=RetryPolicy(max_attempts=1)
        )
    return client_from_settings()


def upstream_is_test_mode() -> bool:
    """Test keys bill nothing upstream; reconciliation then compares steps, not credits."""
    return settings.COASTY_API_KEY.startswith("sk-coasty-test-")


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def webhooks_disabled_reason() -> str:
    """Why Coasty cannot deliver webhooks to this portal, or "" when it can.

    Coasty only posts to https URLs; the simulator also posts to loopback http. When neither
    holds, runs are launched without a webhook_url and followed by the event stream and polling.
    """
    public = settings.PORTAL_PUBLIC_URL
    scheme = urlsplit(public).scheme
    if scheme == "https":
        return ""
    if scheme == "http" and _is_loopback(public) and _is_loopback(settings.COASTY_BASE_URL):
        return ""
    return (
        f"Coasty cannot deliver webhooks to {public} (it needs an https address), so runs are "
        "followed through their event stream and polling only."
    )


def webhook_url_for(run_id) -> str:
    reason = webhooks_disabled_reason()
    if reason:
        logger.warning("webhooks off: %s", reason)
        return ""
    return settings.PORTAL_PUBLIC_URL + reverse("coasty_webhook", args=[run_id])
