"""Pages: a person's notifications and email choices; a team's endpoints (managers only).

Endpoints belong to one team: someone outside it gets 404, a member below manager 403, as on
every team page.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from portal.core.http import AuthenticatedRequest
from portal.core.query import bounded_int
from portal.notifications import selectors, services
from portal.notifications.forms import EmailPreferencesForm, EndpointForm
from portal.notifications.models import WebhookDelivery, WebhookEndpoint
from portal.teams.access import TeamRequest, team_view
from portal.teams.models import Role

NEW_SECRET_SESSION_KEY = "notifications:new-secret"  # noqa: S105 — a session key's name

manager_view = team_view(Role.MANAGER, action="manage the team's endpoints")


@login_required
@require_http_methods(["GET", "POST"])
def notification_list(request: AuthenticatedRequest) -> HttpResponse:
    """The person's notifications, newest first; POST marks them (or the ones given) read."""
    if request.method == "POST":
        given = (bounded_int(v, lo=1) for v in request.POST.getlist("ids"))
        ids = [pk for pk in given if pk is not None] or None
        services.notifications_mark_read(user=request.user, ids=ids)
        target = request.POST.get("next", "")
        safe = target.startswith("/") and not target.startswith("//")
        return redirect(target if safe else "notifications")
    page = Paginator(selectors.notifications_for_user(request.user), 50).get_page(
        request.GET.get("page")
    )
    return render(request, "notifications/list.html", {"page": page})


@login_required
@require_POST
def notification_open(request: AuthenticatedRequest, notification_id: int) -> HttpResponse:
    """Mark one notification read and go where it points (inside the portal only)."""
    notification = get_object_or_404(
        selectors.notifications_for_user(request.user), pk=notification_id
    )
    services.notifications_mark_read(user=request.user, ids=[notification.pk])
    path = notification.url.removeprefix(settings.PORTAL_PUBLIC_URL)
    safe = path.startswith("/") and not path.startswith("//")
    return redirect(path if safe else "notifications")


@login_required
@require_POST
def email_preferences(request: AuthenticatedRequest) -> HttpResponse:
    form = EmailPreferencesForm(request.POST)
    if form.is_valid():
        services.email_preferences_set(
            user=request.user, enabled_types=set(form.cleaned_data["email"])
        )
        messages.success(request, "Saved your email choices.")
    else:
        messages.error(request, "Those choices could not be saved; try again.")
    return redirect("/account/#email-preferences")


# --- Team endpoints -----------------------------------------------------------------------------


def _endpoint(request: TeamRequest, endpoint_id: int) -> WebhookEndpoint:
    return get_object_or_404(WebhookEndpoint, pk=endpoint_id, team=request.team)


@never_cache  # the page right after a create or a rotation shows a secret, once
@manager_view
@require_http_methods(["GET", "POST"])
def endpoint_list(request: TeamRequest, slug: str) -> HttpResponse:
    form = EndpointForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                endpoint, secret = services.endpoint_create(
                    team=request.team, user=request.user, **form.cleaned_data
                )
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    form.add_error(field if field in form.fields else None, errors)
                status = 400
            else:
                request.session[NEW_SECRET_SESSION_KEY] = [endpoint.pk, secret]
                return redirect("endpoint_detail", slug=slug, endpoint_id=endpoint.pk)
        else:
            status = 400
    return render(
        request,
        "notifications/endpoints.html",
        {"form": form, "endpoints": selectors.endpoints_for_team(request.team)},
        status=status,
    )


@never_cache
@manager_view
def endpoint_detail(request: TeamRequest, slug: str, endpoint_id: int) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    shown = request.session.pop(NEW_SECRET_SESSION_KEY, None)
    new_secret = shown[1] if shown and shown[0] == endpoint.pk else None
    page = Paginator(selectors.deliveries_for_endpoint(endpoint), 25).get_page(
        request.GET.get("page")
    )
    attempts = selectors.attempts_for_deliveries(list(page.object_list))
    rows = [(delivery, attempts.get(delivery.pk, [])) for delivery in page.object_list]
    return render(
        request,
        "notifications/endpoint_detail.html",
        {"endpoint": endpoint, "new_secret": new_secret, "page": page, "rows": rows},
    )


@manager_view
@require_POST
def endpoint_action(request: TeamRequest, slug: str, endpoint_id: int, action: str) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    if action == "test":
        services.endpoint_test_send(endpoint=endpoint)
        messages.success(request, "Test delivery queued; it shows in the log below in a moment.")
    elif action == "rotate":
        secret = services.endpoint_secret_rotate(endpoint=endpoint)
        request.session[NEW_SECRET_SESSION_KEY] = [endpoint.pk, secret]
        messages.success(
            request, "New secret made. The old one keeps signing too for the next 24 hours."
        )
    elif action in ("enable", "disable"):
        services.endpoint_set_enabled(endpoint=endpoint, enabled=action == "enable")
        messages.success(request, f"Endpoint {action}d.")
    elif action == "delete":
        services.endpoint_delete(endpoint=endpoint)
        messages.success(request, "Endpoint deleted.")
        return redirect("endpoint_list", slug=slug)
    else:
        return HttpResponse(status=404)
    return redirect("endpoint_detail", slug=slug, endpoint_id=endpoint.pk)


@manager_view
@require_POST
def delivery_resend(
    request: TeamRequest, slug: str, endpoint_id: int, delivery_id: int
) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    delivery = get_object_or_404(WebhookDelivery, pk=delivery_id, endpoint=endpoint)
    services.delivery_resend(delivery=delivery)
    messages.success(request, f"Re-sending {delivery.webhook_id} (same webhook-id).")
    return redirect("endpoint_detail", slug=slug, endpoint_id=endpoint.pk)
