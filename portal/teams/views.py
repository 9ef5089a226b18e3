"""The team pages: the list of a person's teams, creating a team, its members, and the
invitations managers send by email."""

import uuid

from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from portal.core.http import AuthenticatedRequest
from portal.teams import services
from portal.teams.access import TeamRequest, is_billing_admin, team_view
from portal.teams.forms import (
    InvitationForm,
    InvitationSignUpForm,
    MemberAddForm,
    RoleChangeForm,
    TeamCreateForm,
)
from portal.teams.models import ROLE_DESCRIPTIONS, Invitation, Role, Team
from portal.teams.selectors import (
    invitation_for_link,
    memberships_for_user,
    team_invitations_pending,
    team_members,
    team_membership_changes,
)


@login_required
def team_list(request: AuthenticatedRequest) -> HttpResponse:
    memberships = memberships_for_user(request.user)
    # The team switcher in the top bar sends ?team=<slug> here (its Go button without script).
    chosen = request.GET.get("team", "")
    if chosen and any(m.team.slug == chosen for m in memberships):
        return redirect("team_dashboard", slug=chosen)
    # A billing admin reads every team's pages: the other teams are listed for them too.
    readable = (
        Team.objects.exclude(pk__in=[m.team_id for m in memberships]).order_by("name")
        if is_billing_admin(request.user)
        else Team.objects.none()
    )
    return render(
        request, "portal/team_list.html", {"memberships": memberships, "readable": readable}
    )


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
    return _render_members(request)


def _render_members(
    request: TeamRequest,
    add_form: MemberAddForm | None = None,
    invite_form: InvitationForm | None = None,
    status: int = 200,
):
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
            "add_form": add_form or MemberAddForm(team=request.team),
            "invite_form": invite_form or InvitationForm(team=request.team),
            # Addresses and links waiting for an answer are the managers' business only.
            "invitations": list(team_invitations_pending(request.team))
            if request.membership.can_manage
            else [],
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
    return _render_members(request, add_form=form, status=400)


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


@team_view(Role.MANAGER, action="invite people")
@require_POST
def team_invitation_create(request: TeamRequest, slug: str) -> HttpResponse:
    form = InvitationForm(request.POST, team=request.team)
    if form.is_valid():
        email = form.cleaned_data["email"]
        try:
            services.invitation_create(
                team=request.team,
                email=email,
                role=form.cleaned_data["role"],
                invited_by=request.user,
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        except services.InvitationEmailNotSent:
            messages.error(
                request,
                f"The invitation of {email} is saved, but the email could not be sent. "
                "Invite the address again to send a fresh link.",
            )
            return redirect("team_members", slug=slug)
        else:
            messages.success(request, f"Invited {email}. The link in their email works for 7 days.")
            return redirect("team_members", slug=slug)
    return _render_members(request, invite_form=form, status=400)


@team_view(Role.MANAGER, action="revoke invitations")
@require_POST
def team_invitation_revoke(request: TeamRequest, slug: str, invitation_id: int) -> HttpResponse:
    # Looked up within the team of the URL, which the caller manages: another team's
    # invitation is a 404 here.
    invitation = get_object_or_404(request.team.invitations, pk=invitation_id)
    try:
        services.invitation_revoke(invitation=invitation, actor=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Revoked the invitation of {invitation.email}.")
    return redirect("team_members", slug=slug)


# --- Accepting an invitation (no login needed) ----------------------------------------------------

CLOSED_TITLES = {
    "used": "This invitation was already used",
    "expired": "This invitation has expired",
    "revoked": "This invitation was withdrawn",
}


@never_cache
@require_http_methods(["GET", "POST"])
def invitation_accept(request: HttpRequest, key: uuid.UUID, token: str) -> HttpResponse:
    """The page an invitation's link opens.

    Nothing is read from or written to the session, and nothing is stored, until the token
    matches; every wrong key or token gets the same 404. A GET never accepts (mail scanners
    open links): the person confirms with a POST. Someone without an account makes one here;
    someone with an account logs in (the login page sends them back) and confirms.
    """
    invitation = invitation_for_link(key=key, token=token)
    if invitation is None:
        raise Http404("No such invitation.")
    reason = services.invitation_closed_reason(invitation)
    if reason is not None:
        return _render_closed(request, invitation, reason)
    context: dict = {"invitation": invitation, "role_label": Role(invitation.role).label}
    user = request.user
    if user.is_authenticated:
        if not services.email_matches(user, invitation):  # type: ignore[arg-type]
            return render(request, "portal/invitation_other_account.html", context, status=403)
        if request.method == "POST":
            try:
                services.invitation_accept(invitation=invitation, user=user)  # type: ignore[arg-type]
            except services.InvitationClosed as exc:
                return _render_closed(request, invitation, exc.reason)
            messages.success(request, f"Welcome to {invitation.team.name}.")
            return redirect("team_dashboard", slug=invitation.team.slug)
        return render(request, "portal/invitation_accept.html", context)
    if get_user_model().objects.filter(email__iexact=invitation.email).exists():
        login_url = reverse("login") + "?" + urlencode({"next": request.path})
        return render(request, "portal/invitation_log_in.html", {**context, "login_url": login_url})
    form = InvitationSignUpForm(request.POST or None, email=invitation.email)
    if request.method == "POST" and form.is_valid():
        try:
            new_user = services.invitation_accept_new_user(
                invitation=invitation,
                username=form.cleaned_data["username"],
                password=form.cleaned_data["password1"],
                name=form.cleaned_data.get("name") or "",
            )
        except services.InvitationClosed as exc:
            return _render_closed(request, invitation, exc.reason)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            login(request, new_user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, f"Welcome to {invitation.team.name}.")
            return redirect("team_dashboard", slug=invitation.team.slug)
    status = 400 if request.method == "POST" else 200
    return render(
        request, "portal/invitation_sign_up.html", {**context, "form": form}, status=status
    )


def _render_closed(request: HttpRequest, invitation: Invitation, reason: str) -> HttpResponse:
    return render(
        request,
        "portal/invitation_closed.html",
        {"invitation": invitation, "reason": reason, "title": CLOSED_TITLES[reason]},
        status=410,
    )
