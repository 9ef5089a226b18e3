"""Who hears about an event in the portal, and who gets an email by default.

- a run's events: the person who launched it (its team's managers if nobody did);
- approvals, budgets and wallets: the team's managers (wallets also billing admins, who top up);
- discrepancies: billing admins (the `billing.manage_wallets` permission);
- anything else (schedules, types added later): the event's user, else the managers.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db.models import Q, QuerySet

from portal.notifications.models import EventType, OutboxEvent
from portal.teams.access import BILLING_ADMIN_PERMISSION
from portal.teams.models import Membership, Role

LAUNCHER_TYPES = {
    EventType.RUN_AWAITING_HUMAN,
    EventType.RUN_SUCCEEDED,
    EventType.RUN_FAILED,
    EventType.RUN_CANCELLED,
    EventType.RUN_TIMED_OUT,
}
MANAGER_TYPES = {EventType.RUN_AWAITING_APPROVAL, EventType.BUDGET_THRESHOLD}
MANAGER_AND_BILLING_TYPES = {EventType.WALLET_LOW_BALANCE}
BILLING_TYPES = {EventType.BILLING_DISCREPANCY_OPENED}

# Email unless the person says otherwise: what needs someone, or went wrong, or costs money.
# A run that simply succeeded or was cancelled (usually by them) is in the portal only.
EMAIL_DEFAULTS: dict[str, bool] = {
    EventType.RUN_AWAITING_HUMAN: True,
    EventType.RUN_AWAITING_APPROVAL: True,
    EventType.RUN_SUCCEEDED: False,
    EventType.RUN_FAILED: True,
    EventType.RUN_CANCELLED: False,
    EventType.RUN_TIMED_OUT: True,
    EventType.WALLET_LOW_BALANCE: True,
    EventType.BUDGET_THRESHOLD: True,
    EventType.BILLING_DISCREPANCY_OPENED: True,
    EventType.SCHEDULE_SKIPPED: True,
}


def team_managers(team_id: int) -> QuerySet:
    return get_user_model().objects.filter(
        is_active=True,
        pk__in=Membership.objects.filter(team_id=team_id, role=Role.MANAGER).values("user_id"),
    )


def billing_admins() -> QuerySet:
    app_label, codename = BILLING_ADMIN_PERMISSION.split(".", 1)
    permission = Permission.objects.filter(
        content_type__app_label=app_label, codename=codename
    ).first()
    admins = Q(is_superuser=True)
    if permission is not None:
        admins |= Q(user_permissions=permission) | Q(groups__permissions=permission)
    return get_user_model().objects.filter(admins, is_active=True).distinct()


def event_recipients(event: OutboxEvent) -> list[Any]:
    """The people told about `event` in the portal, each once, in id order."""
    people: dict[int, Any] = {}

    def add(users) -> None:
        for user in users:
            people.setdefault(user.pk, user)

    launcher = event.user if event.user is not None and event.user.is_active else None
    if event.type in LAUNCHER_TYPES:
        add([launcher] if launcher else team_managers(event.team_id))
    elif event.type in MANAGER_TYPES:
        add(team_managers(event.team_id))
    elif event.type in MANAGER_AND_BILLING_TYPES:
        add(team_managers(event.team_id))
        add(billing_admins())
    elif event.type in BILLING_TYPES:
        add(billing_admins())
    else:
        add([launcher] if launcher else team_managers(event.team_id))
    return [people[pk] for pk in sorted(people)]
