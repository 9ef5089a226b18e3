import datetime as dt
import hashlib
import logging
import time

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from rest_framework.exceptions import AuthenticationFailed

from portal.core import services
from portal.core.crypto import SecretUnreadable, decrypt_secret
from portal.core.forms import ApiTokenForm
from portal.core.http import AuthenticatedRequest
from portal.core.logins import lockout_lift_for_account
from portal.core.rest.authentication import BearerTokenAuthentication
from portal.core.selectors import api_tokens_for_user
from portal.notifications.models import EventType
from portal.notifications.services import email_preferences_for
from portal.site.dashboard import team_dashboard_context
from portal.site.inbox import inbox_for_user
from portal.teams.access import (
    TeamReadRequest,
    is_billing_admin,
    team_view,
    token_scopes_allowed,
)
from portal.teams.selectors import memberships_for_user
from runs import sql as runs_sql
from runs.coasty import WebhookSignatureError, verify
from runs.models import WebhookDelivery

logger = logging.getLogger(__name__)

NEW_TOKEN_SESSION_KEY = "portal:new-api-token"  # noqa: S105 — a session key's name
User = get_user_model()


@login_required
def home(request: AuthenticatedRequest) -> HttpResponse:
    """Where a person starts: a billing admin at the billing overview (every team's wallet, and
    from there each team's pages), anyone else at their first team's dashboard."""
    if is_billing_admin(request.user):
        return redirect("billing_overview")
    first = memberships_for_user(request.user).first()
    if first is not None:
        return redirect("team_dashboard", slug=first.team.slug)
    return redirect("team_list")


@team_view(billing_admins_read=True)
@require_GET
def team_dashboard(request: TeamReadRequest, slug: str) -> HttpResponse:
    context = team_dashboard_context(
        team=request.team, membership=request.membership, user=request.user
    )
    return render(request, "portal/team_dashboard.html", context)


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """Django's, and a reset also lifts a lockout of the account: its owner just proved who
    they are through their email (the address lockout, if any, stays)."""

    def form_valid(self, form):
        response = super().form_valid(form)
        lockout_lift_for_account(username=form.user.get_username())
        return response


@team_view(billing_admins_read=True)
@require_GET
def team_dashboard_live(request: TeamReadRequest, slug: str) -> HttpResponse:
    """The dashboard's changing part, fetched every few seconds while it is open (htmx)."""
    context = team_dashboard_context(
        team=request.team, membership=request.membership, user=request.user
    )
    return render(request, "portal/_dashboard_live.html", {**context, "fragment": True})


# --- Account and API tokens -----------------------------------------------------------------------


@never_cache  # the page that shows a new token must not be kept by any cache
@login_required
@require_http_methods(["GET", "POST"])
def account(request: AuthenticatedRequest) -> HttpResponse:
    """The person's account: their teams and their API tokens.

    POST makes a token and redirects (so a refresh cannot make a second one); the token rides
    the session to the next page view, which shows it once and forgets it. Only its hash is kept.
    """
    form = ApiTokenForm(
        request.POST or None, initial={"scopes": token_scopes_allowed(request.user)}
    )
    status = 200
    if request.method == "POST":
        if form.is_valid():
            days = form.cleaned_data["expires_in_days"]
            try:
                row, secret = services.api_token_create(
                    user=request.user,
                    name=form.cleaned_data["name"],
                    scopes=form.cleaned_data["scopes"],
                    expires_at=timezone.now() + dt.timedelta(days=days) if days else None,
                )
            except ValidationError as exc:
                form.add_error(None, exc)
                status = 400
            else:
                logger.info("API token %s made by %s", row.prefix, request.user)
                request.session[NEW_TOKEN_SESSION_KEY] = secret
                return redirect("account")
        else:
            status = 400
    return render(
        request,
        "portal/account.html",
        {
            "form": form,
            "new_token": request.session.pop(NEW_TOKEN_SESSION_KEY, None),
            "tokens": api_tokens_for_user(request.user),
            "memberships": memberships_for_user(request.user),
            "email_preferences": [
                (value, EventType(value).label, enabled)
                for value, enabled in email_preferences_for(request.user).items()
            ],
        },
        status=status,
    )


@login_required
def inbox(request: AuthenticatedRequest) -> HttpResponse:
    """What waits for the person across their teams: paused runs (resume or cancel here) and,
    for managers, runs waiting for approval."""
    return render(request, "portal/inbox.html", {"entries": inbox_for_user(request.user)})


@login_required
@require_POST
def api_token_revoke(request: AuthenticatedRequest, token_id: int) -> HttpResponse:
    token = get_object_or_404(api_tokens_for_user(request.user), pk=token_id)
    services.api_token_revoke(token=token)
    messages.success(request, f"Revoked “{token.name}” ({token.prefix}…). It no longer works.")
    return redirect("account")


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness of what the portal cannot work without: its database and its task broker.

    Anyone (a load balancer) gets `{"status": ...}` and the status code; the details (database
    vendor, broker kind, queue size, what failed) only staff signed in, or a caller with a valid
    API token: they tell an attacker what the portal runs on.
    """
    checks = {"database": _check_database(), "broker": _check_broker()}
    healthy = all(check["ok"] for check in checks.values())
    body: dict = {"status": "ok" if healthy else "unavailable"}
    if _may_see_health_details(request):
        body["checks"] = checks
    return JsonResponse(body, status=200 if healthy else 503)


def _may_see_health_details(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_staff:
        return True
    if not request.META.get("HTTP_AUTHORIZATION"):
        return False
    try:
        return BearerTokenAuthentication().authenticate(request) is not None  # type: ignore[arg-type]
    except AuthenticationFailed:
        return False


def _check_database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        logger.warning("healthz: database check failed: %s", exc)
        return {"ok": False, "error": exc.__class__.__name__}
    return {"ok": True, "vendor": connection.vendor}


def _check_broker() -> dict:
    from django_q.brokers import get_broker

    try:
        broker = get_broker()
        broker.ping()
        queued = broker.queue_size()  # a real round trip: the ORM broker's ping is a no-op
    except Exception as exc:
        logger.warning("healthz: broker check failed: %s", exc)
        return {"ok": False, "error": exc.__class__.__name__}
    return {
        "ok": True,
        "kind": "redis" if "redis" in broker.info().lower() else "orm",
        "queued": queued,
    }


@csrf_exempt
def bench_ok(request: HttpRequest) -> JsonResponse:
    """`make bench` only (settings.BENCH_ENDPOINTS): the floor of any view in this deployment.

    It goes through the same middleware as the webhook view, reads the body as that view does,
    answers the same shape, and touches no database.
    """
    _ = request.body
    return JsonResponse({"ok": True, "message": "ok"})


BENCH_DURABLE_RESULT = "bench: durable minimum"


@csrf_exempt
def bench_durable(request: HttpRequest, run_id) -> JsonResponse:
    """`make bench` only (settings.BENCH_ENDPOINTS): the least a durable webhook intake can do,
    the limit the real one (runs.services.webhooks) is measured against.

    As the real intake does: the run's secret is read without a lock (one indexed SELECT) and
    the signature verified against it (constant time); then ONE INSERT of the delivery into the
    real delivery table, committed on its own (autocommit), and a 200. No lock, no dedupe, no
    status change, no task: what remains of the real intake beyond this is its own cost.
    """
    raw = request.body
    known = runs_sql.run_webhook_secret(run_id)
    if known is None or not known[0]:
        return JsonResponse({"ok": False, "message": "unknown run"}, status=404)
    header = request.headers.get("Coasty-Signature", "")
    try:
        verify(header, raw, [decrypt_secret(known[0])], now=time.time())
    except (WebhookSignatureError, SecretUnreadable):
        return JsonResponse({"ok": False, "message": "bad signature"}, status=401)
    runs_sql.delivery_insert(
        run_id,
        {"Coasty-Signature": header},
        raw,
        hashlib.sha256(raw).hexdigest(),
        verdict=WebhookDelivery.Verdict.ACCEPTED,
        result=BENCH_DURABLE_RESULT,
    )
    return JsonResponse({"ok": True, "message": "stored"})
