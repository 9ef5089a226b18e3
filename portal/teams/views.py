"""The team pages: the list of a person's teams, creating a team, and its members."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from portal.core.http import AuthenticatedRequest
from portal.teams import services
from portal.teams.access import TeamRequest, team_view
from portal.teams.forms import MemberAddForm, RoleChangeForm, TeamCreateForm
from portal.teams.models import ROLE_DESCRIPTIONS, Role
from portal.teams.selectors import memberships_for_user, team_members, team_membership_changes


@login_required
def team_list(request: AuthenticatedRequest) -> HttpResponse:
    memberships = memberships_for_user(request.user)
    # The team switcher in the top bar sends ?team=<slug> here (its Go button without script).
    chosen = request.GET.get("team", "")
    if chosen and any(m.team.slug == chosen for m in memberships):
        return redirect("team_dashboard", slug=chosen)
    return render(request, "portal/team_list.html", {"memberships": memberships})


@login_required
@permission_required("portal.add_team", raise_exception=True)
@require_http_methods(["GET", "POST"])
def team_create(request: AuthenticatedRequest) -> HttpResponse:
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
@require_GET
def team_members_page(request: TeamRequest, slug: str) -> HttpResponse:
    return _render_members(request, MemberAddForm(team=request.team))


def _render_members(request: TeamRequest, add_form: MemberAddForm, status: int = 200):
    members = list(team_members(request.team))
    managers = sum(1 for m in members if m.role == Role.MANAGER)
    return render(
        request,
        "portal/team_members.html",
        {
            "team": request.team,
            "membership": request.membership,
            "members": members,
            # The one manager left cannot be removed (membership_remove refuses it): the page
            # says so beside the button instead of offering it.
            "last_manager_pk": next((m.pk for m in members if m.role == Role.MANAGER), None)
            if managers == 1
            else None,
            "changes": team_membership_changes(request.team),
            "add_form": add_form,
            "roles": [(role, ROLE_DESCRIPTIONS[role]) for role in Role],
        },
        status=status,
    )


@team_view(Role.MANAGER, action="add members")
@require_POST
def team_member_add(request: TeamRequest, slug: str) -> HttpResponse:
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
def team_member_role(request: TeamRequest, slug: str, membership_id: int) -> HttpResponse:
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
def team_member_remove(request: TeamRequest, slug: str, membership_id: int) -> HttpResponse:
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
