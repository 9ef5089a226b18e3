"""How logins are throttled: django-axes' lockout, with a back-off of our own.

After LOGIN_FAILURE_LIMIT failed logins for one account (from anywhere) or from one address
(for any account), further attempts are refused with 429 for a cool-off. The cool-off doubles
with each lockout in the last day (LOGIN_COOL_OFF_MINUTES, 2×, 4×, … capped at a day), so a
patient guesser gets a handful of tries an hour, while a person who mistyped waits minutes.
Axes applies this to every login that goes through `authenticate()` with a request: the login
page and the admin's. Every failure is logged (WARNING, by axes) and kept as an
AccessFailureLog row; the admin lists them under "Axes".
"""

import datetime as dt
import ipaddress

from axes.backends import AxesStandaloneBackend
from axes.models import AccessAttempt, AccessFailureLog
from axes.utils import reset as axes_reset
from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone

BACK_OFF_WINDOW = dt.timedelta(days=1)
BACK_OFF_CAP = dt.timedelta(days=1)


def client_ip(request: HttpRequest) -> str:
    """The client's address. Behind the TLS proxy (BEHIND_TLS_PROXY) it is the last address of
    X-Forwarded-For, the one the proxy itself appended; the ones before it are the client's word."""
    if getattr(settings, "SECURE_PROXY_SSL_HEADER", None):
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        last = _address(forwarded.split(",")[-1])
        if last:
            return last
    return _address(request.META.get("REMOTE_ADDR", "")) or "0.0.0.0"  # noqa: S104 (a value)


def _address(text: str) -> str | None:
    """A valid IP address or None (axes stores it in an inet column on PostgreSQL)."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


def lockout_cool_off(request: HttpRequest | None = None) -> dt.timedelta:
    """How long a lockout lasts for this request's account and address: the base cool-off,
    doubled for each earlier lockout of either in the last day."""
    base = dt.timedelta(minutes=settings.LOGIN_COOL_OFF_MINUTES)
    if request is None:
        return base
    username = (request.POST.get("username") or "").strip() if request.method == "POST" else ""
    address = getattr(request, "axes_ip_address", None) or client_ip(request)
    since = timezone.now() - BACK_OFF_WINDOW
    # Failures that led to a lockout; the retries refused while locked out do not count, or
    # forty posts in a row would lock an account for hours.
    recent = AccessFailureLog.objects.filter(attempt_time__gte=since, locked_out=False)
    by_address = recent.filter(ip_address=address).count()
    by_account = recent.filter(username=username).count() if username else 0
    lockouts = max(by_address, by_account) // max(1, settings.AXES_FAILURE_LIMIT)
    return min(base * (2 ** max(0, lockouts - 1)), BACK_OFF_CAP)


class LoginLockoutBackend(AxesStandaloneBackend):
    """Axes' lockout check, first in AUTHENTICATION_BACKENDS.

    Every login over the web passes its request (the login page, the admin's, DRF); a call
    without one (the test client's login(), a script) has no address to lock and is left to the
    next backend instead of failing, as axes' own backend would.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def lockout_lift_for_account(*, username: str) -> int:
    """Forget an account's failed logins (after its owner proved who they are by a password
    reset), so they can log in at once. The failure log stays, so later lockouts still back off."""
    return axes_reset(username=username)


def login_failures_purge(*, now: dt.datetime | None = None) -> int:
    """Delete failure records older than LOGIN_FAILURE_LOG_DAYS (the back-off reads one day of
    them), and lockout counters whose last attempt is as old. Returns the rows deleted."""
    cutoff = (now or timezone.now()) - dt.timedelta(days=settings.LOGIN_FAILURE_LOG_DAYS)
    logs, _ = AccessFailureLog.objects.filter(attempt_time__lt=cutoff).delete()
    attempts, _ = AccessAttempt.objects.filter(attempt_time__lt=cutoff).delete()
    return logs + attempts
