"""django-q2 entry points: take ids, load rows, call a service.

Services enqueue these by function, so the services are imported inside the functions here (a
module-level import would be a cycle: services -> tasks -> services).
"""

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.mail import send_mail
from django.db.models import Q

from portal.core.money import format_cents
from portal.teams.models import Membership, Role, Team

logger = logging.getLogger(__name__)


def reconcile_billing() -> str:
    """The every-15-minutes job: re-check finished holds against Coasty's figures."""
    from billing.services import reconcile_finished_holds

    summary = reconcile_finished_holds(caused_by="job:reconcile_billing")
    message = (
        f"Reconciled {summary.checked} hold(s): {summary.matched} matched, "
        f"{summary.discrepancies} with a discrepancy; {summary.skipped} without figures"
        + (f"; {summary.failed} failed (see the log)." if summary.failed else ".")
    )
    if not summary.complete:
        # Out of time before the end of the list: the next job resumes after the stored
        # cursor, now rather than at the next schedule.
        from portal.core.queue import enqueue_on_commit

        message += " Not at the end of the list yet: continuing."
        enqueue_on_commit(reconcile_billing)
    logger.info(message)
    return message


def send_low_balance_email(*, team_id: int, available_cents: int, threshold_cents: int) -> int:
    """One email per crossing, to the team's managers and the billing admins."""
    team = Team.objects.filter(pk=team_id).first()
    if team is None:
        return 0
    recipients = sorted(_manager_emails(team) | _billing_admin_emails())
    if not recipients:
        logger.warning("Low balance in %s, but nobody to tell (no email addresses).", team.slug)
        return 0
    wallet_url = f"{settings.PORTAL_PUBLIC_URL}/teams/{team.slug}/wallet/"
    return send_mail(
        subject=f"[Coasty Portal] {team.name}'s wallet is low: {format_cents(available_cents)} left",
        message=(
            f"The wallet of {team.name} has {format_cents(available_cents)} available, below its "
            f"alert level of {format_cents(threshold_cents)}.\n\n"
            "New runs are refused once it cannot cover their hold. A billing admin can top it up:\n"
            f"{wallet_url}\n\n"
            "You get this email once each time the balance drops below the alert level."
        ),
        from_email=None,
        recipient_list=recipients,
        fail_silently=False,
    )


def _manager_emails(team: Team) -> set[str]:
    return set(
        Membership.objects.filter(team=team, role=Role.MANAGER)
        .exclude(user__email="")
        .values_list("user__email", flat=True)
    )


def _billing_admin_emails() -> set[str]:
    permission = Permission.objects.filter(
        content_type__app_label="billing", codename="manage_wallets"
    ).first()
    admins = Q(is_superuser=True)
    if permission is not None:
        admins |= Q(user_permissions=permission) | Q(groups__permissions=permission)
    return set(
        get_user_model()
        .objects.filter(admins, is_active=True)
        .exclude(email="")
        .values_list("email", flat=True)
    )
