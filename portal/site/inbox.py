"""The inbox: what waits for a person across all their teams, oldest first.

Runs that wait for a human, in the teams where the person may resume or cancel them (members
and managers); runs that wait for a manager's approval, in the teams they manage (but not the
person's own launches, which they may not approve). Read from the
runs themselves (not from notifications), so an entry leaves as soon as someone acts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from portal.teams.models import Membership, Role
from runs.models import Run, RunStatus

AWAITING_APPROVAL = RunStatus.AWAITING_APPROVAL.value


@dataclass(frozen=True)
class InboxEntry:
    run: Run
    kind: str  # "awaiting_human" | "awaiting_approval"
    since: datetime

    @property
    def waited_seconds(self) -> int:
        return max(0, int((timezone.now() - self.since).total_seconds()))


def inbox_for_user(user: Any, *, limit: int = 200) -> list[InboxEntry]:
    roles = dict(Membership.objects.filter(user=user).values_list("team_id", "role"))
    acting = [team for team, role in roles.items() if role in (Role.MEMBER, Role.MANAGER)]
    managing = [team for team, role in roles.items() if role == Role.MANAGER]
    # A manager's own launch is not theirs to approve: another manager's inbox has it.
    waiting = Q(team_id__in=acting, status=RunStatus.AWAITING_HUMAN) | (
        Q(team_id__in=managing, status=AWAITING_APPROVAL) & ~Q(created_by=user)
    )
    runs = (
        Run.objects.filter(waiting)
        .select_related("team", "created_by")
        .annotate(waiting_since=Coalesce("status_at", "created_at"))
        .order_by("waiting_since", "pk")[:limit]
    )
    return [
        InboxEntry(
            run=run,
            kind="awaiting_human" if run.status == RunStatus.AWAITING_HUMAN else AWAITING_APPROVAL,
            since=run.waiting_since,  # type: ignore[attr-defined]
        )
        for run in runs
    ]
