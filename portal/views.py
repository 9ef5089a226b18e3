import logging

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import ValidationError
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from portal import services
from portal.access import team_view
from portal.dashboard import team_dashboard_context
from portal.forms import ApiTokenForm, MemberAddForm, RoleChangeForm, TeamCreateForm
from portal.models import ROLE_DESCRIPTIONS, Role
from portal.selectors import (
    api_tokens_for_user,
    memberships_for_user,
    team_members,
    team_membership_changes,
)

logger = logging.getLogger(__name__)

NEW_TOKEN_SESSION_KEY = "portal:new-api-token"  # noqa: S105 — a session key's name
User = get_user_model()


@login_required
def home(request: HttpRequest) -> HttpResponse:
    first = memberships_for_user(request.user).first()
    if first is not None:
        return redirect("team_dashboard", slug=first.team.slug)
    return redirect("team_list")


@login_required
def team_list(request: HttpRequest) -> HttpResponse:
    memberships = memberships_for_user(request.user)
    # The team switcher in the top bar sends ?team=<slug> here (its Go button without script).
    chosen = request.GET.get("team", "")
    if chosen and any(m.team.slug == chosen for m in memberships):
        return redirect("team_dashboard", slug=chosen)
    return render(request, "portal/team_list.html", {"memberships": memberships})


@login_required
@permission_required("portal.add_team", raise_exception=True)
@require_http_methods(["GET", "POST"])
def team_create(request: HttpRequest) -> HttpResponse:
    form = TeamCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            team = services.team_create(
                name=form.cleaned_data["name"],
                slug=form.cleaned_data["slug"],
                created_by=request.user,
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, f"Team {team.name} created. You are its manager.")
            return redirect("team_members", slug=team.slug)
    return render(request, "portal/team_create.html", {"form": form})


@team_view()
def team_dashboard(request: HttpRequest, slug: str) -> HttpResponse:
    context = team_dashboard_context(team=request.team, membership=request.membership)
    return render(request, "portal/team_dashboard.html", context)


@team_view()
@require_GET
def team_members_page(request: HttpRequest, slug: str) -> HttpResponse:
    return _render_members(request, MemberAddForm(team=request.team))


def _render_members(request: HttpRequest, add_form: MemberAddForm, status: int = 200):
    return render(
        request,
        "portal/team_members.html",
        {
            "team": request.team,
            "membership": request.membership,
            "members": team_members(request.team),
            "changes": team_membership_changes(request.team),
            "add_form": add_form,
            "roles": [(role, ROLE_DESCRIPTIONS[role]) for role in Role],
        },
        status=status,
    )


@team_view(Role.MANAGER, action="add members")
@require_POST
def team_member_add(request: HttpRequest, slug: str) -> HttpResponse:
    form = MemberAddForm(request.POST, team=request.team)
    if form.is_valid():
        try:
            services.membership_add(
                team=request.team,
                user=form.cleaned_data["person"],
                role=form.cleaned_data["role"],
                actor=request.user,
            )
        except ValidationError as exc:
            form.add_error("person", exc)
        else:
            messages.success(
                request,
                f"Added {form.cleaned_data['person'].get_username()} to {request.team.name}.",
            )
            return redirect("team_members", slug=slug)
    return _render_members(request, form, status=400)


@team_view(Role.MANAGER, action="change roles")
@require_POST
def team_member_role(request: HttpRequest, slug: str, membership_id: int) -> HttpResponse:
    membership = get_object_or_404(request.team.memberships, pk=membership_id)
    form = RoleChangeForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the roles viewer, member or manager.")
        return redirect("team_members", slug=slug)
    try:
        services.membership_change_role(
            membership=membership, role=form.cleaned_data["role"], actor=request.user
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(
            request,
            f"{membership.user.get_username()} is now a {Role(form.cleaned_data['role']).label.lower()}.",
        )
    return redirect("team_members", slug=slug)


@team_view(Role.MANAGER, action="remove members")
@require_POST
def team_member_remove(request: HttpRequest, slug: str, membership_id: int) -> HttpResponse:
    membership = get_object_or_404(request.team.memberships, pk=membership_id)
    try:
        services.membership_remove(membership=membership, actor=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("team_members", slug=slug)
    messages.success(request, f"Removed {membership.user.get_username()} from {request.team.name}.")
    if membership.user_id == request.user.pk:
        return redirect("home")
    return redirect("team_members", slug=slug)


# --- Account and API tokens -----------------------------------------------------------------------


@never_cache  # the page that shows a new token must not be kept by any cache
@login_required
@require_http_methods(["GET", "POST"])
def account(request: HttpRequest) -> HttpResponse:
    """The person's account: their teams and their API tokens.

    POST makes a token and redirects (so a refresh cannot make a second one); the token rides
    the session to the next page view, which shows it once and forgets it. Only its hash is kept.
    """
    form = ApiTokenForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                row, secret = services.api_token_create(
                    user=request.user, name=form.cleaned_data["name"]
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
        },
        status=status,
    )


@login_required
@require_POST
def api_token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = get_object_or_404(api_tokens_for_user(request.user), pk=token_id)
    services.api_token_revoke(token=token)
    messages.success(request, f"Revoked “{token.name}” ({token.prefix}…). It no longer works.")
    return redirect("account")


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness of what the portal cannot work without: its database and its task broker."""
    checks = {"database": _check_database(), "broker": _check_broker()}
    healthy = all(check["ok"] for check in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks},
        status=200 if healthy else 503,
    )


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
