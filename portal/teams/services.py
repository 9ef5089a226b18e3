"""Writes to teams and memberships. Each service owns its transaction."""

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from portal.teams.models import Membership, MembershipChange, Role, Team


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
