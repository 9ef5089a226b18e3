"""Writes to teams, memberships and invitations. Each service owns its transaction."""

import datetime as dt
import logging
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from portal.teams.models import Invitation, Membership, MembershipChange, Role, Team

logger = logging.getLogger(__name__)


def team_create(*, name: str, slug: str, created_by: User | None) -> Team:
    """Create a team; its creator, when given, becomes its first manager."""
    with transaction.atomic():
        if Team.objects.filter(slug=slug).exists():
            raise ValidationError({"slug": f"A team with the address “{slug}” already exists."})
        try:
            team = Team.objects.create(name=name, slug=slug, created_by=created_by)
        except IntegrityError as exc:  # lost a race with another create of the same slug
            raise ValidationError(
                {"slug": f"A team with the address “{slug}” already exists."}
            ) from exc
        if created_by is not None:
            membership_add(team=team, user=created_by, role=Role.MANAGER, actor=created_by)
    return team


def membership_add(*, team: Team, user, role: str, actor) -> Membership:
    already = f"{user.get_username()} is already a member of {team.name}."
    with transaction.atomic():
        if Membership.objects.filter(team=team, user=user).exists():
            raise ValidationError(already)
        try:
            # A savepoint: when another manager's add of the same person commits between the
            # check above and this insert, the unique constraint refuses it, and on PostgreSQL
            # the caller's transaction must stay usable after that error.
            with transaction.atomic():
                membership = Membership.objects.create(team=team, user=user, role=role)
        except IntegrityError as exc:
            raise ValidationError(already) from exc
        MembershipChange.objects.create(
            team=team,
            actor=actor,
            member=user,
            member_username=user.get_username(),
            action=MembershipChange.Action.ADDED,
            new_role=role,
        )
    return membership


def membership_change_role(*, membership: Membership, role: str, actor) -> Membership:
    with transaction.atomic():
        # Lock the team's memberships so two managers demoting each other at once cannot
        # leave the team without a manager.
        locked = list(
            Membership.objects.filter(team_id=membership.team_id).order_by("pk").select_for_update()
        )
        current = next((m for m in locked if m.pk == membership.pk), None)
        if current is None:
            raise ValidationError("That person is no longer a member of this team.")
        if current.role == role:
            return current
        refuse_losing_last_manager(locked, leaving=current, new_role=role)
        old_role = current.role
        current.role = role
        current.save(update_fields=["role"])
        MembershipChange.objects.create(
            team_id=current.team_id,
            actor=actor,
            member=current.user,
            member_username=current.user.get_username(),
            action=MembershipChange.Action.ROLE_CHANGED,
            old_role=old_role,
            new_role=role,
        )
    return current


def membership_remove(*, membership: Membership, actor) -> None:
    with transaction.atomic():
        locked = list(
            Membership.objects.filter(team_id=membership.team_id).order_by("pk").select_for_update()
        )
        current = next((m for m in locked if m.pk == membership.pk), None)
        if current is None:
            return  # already removed: removing twice is the same as removing once
        refuse_losing_last_manager(locked, leaving=current, new_role=None)
        MembershipChange.objects.create(
            team_id=current.team_id,
            actor=actor,
            member=current.user,
            member_username=current.user.get_username(),
            action=MembershipChange.Action.REMOVED,
            old_role=current.role,
        )
        current.delete()


def refuse_losing_last_manager(
    memberships: list[Membership], *, leaving: Membership, new_role: str | None
) -> None:
    """Refuse to let `leaving` stop being a manager (new_role None: leave the team) when it is
    the last manager among `memberships`, the team's memberships, locked by the caller."""
    if leaving.role != Role.MANAGER or new_role == Role.MANAGER:
        return
    managers = [m for m in memberships if m.role == Role.MANAGER]
    if len(managers) <= 1:
        raise ValidationError(
            "A team needs at least one manager. Make someone else a manager first."
        )


# --- Invitations ----------------------------------------------------------------------------------

INVITATION_LIFETIME = dt.timedelta(days=7)
# Each invitation sends an email to an address a manager typed: a team may send at most this
# many an hour (a stolen manager session cannot turn the portal into a mailer), and keep at most
# this many pending at once (a list a manager can still review).
INVITATIONS_PER_HOUR_MAX = 30
INVITATIONS_PENDING_MAX = 100


class InvitationEmailNotSent(Exception):
    """The invitation was stored but its email could not be handed to the mail server."""


def invitation_link(*, invitation: Invitation, token: str) -> str:
    path = reverse("invitation_accept", args=[invitation.key, token])
    return settings.PORTAL_PUBLIC_URL.rstrip("/") + path


def invitation_create(
    *, team: Team, email: str, role: str, invited_by: User
) -> tuple[Invitation, str]:
    """Invite `email` to `team` with `role` and email them a one-time link; returns the row and
    the link's token, which is never stored. A pending invitation of the same address to the
    same team is replaced: its link stops working.

    The email leaves once the transaction commits; when the mail server refuses it, the
    invitation stays (a re-invite sends a fresh link) and InvitationEmailNotSent is raised.
    """
    email = email.strip().lower()
    if role not in Role.values:
        raise ValidationError({"role": "Choose one of the roles viewer, member or manager."})
    now = timezone.now()
    with transaction.atomic():
        # The team row is locked so two managers inviting at once count against the limits in
        # turn, and replace each other's pending invitation of one address in turn.
        Team.objects.select_for_update().filter(pk=team.pk).first()
        member = (
            Membership.objects.filter(team=team, user__email__iexact=email)
            .select_related("user")
            .first()
        )
        if member is not None:
            raise ValidationError(
                {"email": f"{member.user.get_username()} ({email}) is already in {team.name}."}
            )
        sent_lately = Invitation.objects.filter(
            team=team, created_at__gt=now - dt.timedelta(hours=1)
        ).count()
        if sent_lately >= INVITATIONS_PER_HOUR_MAX:
            raise ValidationError(
                f"{team.name} has sent {INVITATIONS_PER_HOUR_MAX} invitations in the last hour, "
                "the most allowed. Try again later."
            )
        pending = Invitation.objects.filter(team=team, status=Invitation.Status.PENDING)
        replaced = pending.filter(email=email).update(
            status=Invitation.Status.REPLACED, revoked_at=now, revoked_by=invited_by
        )
        if not replaced and pending.filter(expires_at__gt=now).count() >= INVITATIONS_PENDING_MAX:
            raise ValidationError(
                f"{team.name} has {INVITATIONS_PENDING_MAX} pending invitations, the most "
                "allowed. Revoke some first."
            )
        token = secrets.token_urlsafe(32)
        try:
            # A savepoint, as in membership_add: on SQLite the team lock is a no-op, and a
            # concurrent invitation of the same address then meets the one-pending constraint.
            with transaction.atomic():
                invitation = Invitation.objects.create(
                    team=team,
                    email=email,
                    role=role,
                    token_sha256=Invitation.digest(token),
                    invited_by=invited_by,
                    expires_at=now + INVITATION_LIFETIME,
                )
        except IntegrityError as exc:
            raise ValidationError(
                {"email": f"{email} was invited just now by someone else; reload the page."}
            ) from exc
        transaction.on_commit(lambda: _invitation_email_send(invitation=invitation, token=token))
    return invitation, token


def _invitation_email_send(*, invitation: Invitation, token: str) -> None:
    context = {
        "team_name": invitation.team.name,
        "inviter": invitation.invited_by.get_username() if invitation.invited_by else "A manager",
        "role": Role(invitation.role).label.lower(),
        "link": invitation_link(invitation=invitation, token=token),
        "expires_at": invitation.expires_at,
    }
    message = EmailMultiAlternatives(
        subject=f"[Coasty Portal] You are invited to join {invitation.team.name}"[:200],
        body=render_to_string("portal/invitation_email.txt", context),
        to=[invitation.email],
    )
    message.attach_alternative(
        render_to_string("portal/invitation_email.html", context), "text/html"
    )
    try:
        message.send()
    except Exception as exc:  # any mail server failure: the manager is told, nothing else breaks
        logger.exception("invitation %s: the email could not be sent", invitation.pk)
        raise InvitationEmailNotSent(str(exc)) from exc


def invitation_revoke(*, invitation: Invitation, actor: User) -> Invitation:
    """End a pending invitation: its link stops working. Revoking twice is revoking once; an
    accepted invitation cannot be revoked (remove the member instead)."""
    with transaction.atomic():
        Invitation.objects.filter(pk=invitation.pk, status=Invitation.Status.PENDING).update(
            status=Invitation.Status.REVOKED, revoked_at=timezone.now(), revoked_by=actor
        )
        invitation.refresh_from_db()
        if invitation.status == Invitation.Status.ACCEPTED:
            raise ValidationError(
                f"{invitation.email} already accepted this invitation; remove them from the "
                "members list instead."
            )
    return invitation


class InvitationClosed(ValidationError):
    """The invitation can no longer be accepted: `reason` is "used", "expired" or "revoked"."""

    def __init__(self, reason: str):
        super().__init__(f"This invitation can no longer be accepted ({reason}).")
        self.reason = reason


def invitation_closed_reason(invitation: Invitation) -> str | None:
    """Why this invitation cannot be accepted now, or None when it can."""
    if invitation.status == Invitation.Status.ACCEPTED:
        return "used"
    if invitation.status != Invitation.Status.PENDING:
        return "revoked"
    if invitation.expires_at <= timezone.now():
        return "expired"
    return None


def _invitation_claim(*, invitation: Invitation, user: User | None) -> None:
    """Mark the invitation accepted by `user`, or raise InvitationClosed. One conditional
    UPDATE: of two submits of one link at once, exactly one claims it (on SQLite as well, where
    SELECT ... FOR UPDATE is a no-op)."""
    now = timezone.now()
    claimed = Invitation.objects.filter(
        pk=invitation.pk, status=Invitation.Status.PENDING, expires_at__gt=now
    ).update(status=Invitation.Status.ACCEPTED, accepted_at=now, accepted_by=user)
    if not claimed:
        invitation.refresh_from_db()
        raise InvitationClosed(invitation_closed_reason(invitation) or "used")
    invitation.refresh_from_db()


def email_matches(user: User, invitation: Invitation) -> bool:
    return bool(user.email) and user.email.strip().lower() == invitation.email


def invitation_accept(*, invitation: Invitation, user: User) -> Membership:
    """`user`, whose account has the invited address, joins the team with the invited role.

    Written as the inviter's addition in the team's history. Someone added meanwhile keeps
    their membership and role; the invitation is used up all the same.
    """
    if not email_matches(user, invitation):
        raise ValidationError(
            f"This invitation is for {invitation.email}; you are signed in as "
            f"{user.get_username()}."
        )
    with transaction.atomic():
        _invitation_claim(invitation=invitation, user=user)
        existing = Membership.objects.filter(team_id=invitation.team_id, user=user).first()
        if existing is not None:
            return existing
        return membership_add(
            team=invitation.team, user=user, role=invitation.role, actor=invitation.invited_by
        )


def invitation_accept_new_user(
    *, invitation: Invitation, username: str, password: str, name: str = ""
) -> User:
    """Make the account of an invited person who has none (their email is the invited one),
    and join them to the team. The password is validated by the caller's form."""
    first_name, _, last_name = name.strip().partition(" ")
    with transaction.atomic():
        _invitation_claim(invitation=invitation, user=None)  # the account is made next
        if get_user_model().objects.filter(email__iexact=invitation.email).exists():
            raise ValidationError(
                f"An account with the address {invitation.email} exists now; log in to accept."
            )
        try:
            with transaction.atomic():  # a savepoint, as in membership_add
                user = get_user_model().objects.create_user(
                    username=username,
                    email=invitation.email,
                    password=password,
                    first_name=first_name[:150],
                    last_name=last_name.strip()[:150],
                )
        except IntegrityError as exc:
            raise ValidationError({"username": "That username is taken; choose another."}) from exc
        Invitation.objects.filter(pk=invitation.pk).update(accepted_by=user)
        invitation.accepted_by = user
        membership_add(
            team=invitation.team, user=user, role=invitation.role, actor=invitation.invited_by
        )
    return user
