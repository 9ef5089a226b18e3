"""The notification outbox: one row per thing worth telling someone, written in the same
transaction as the state change that causes it (a transactional outbox).

A row is recorded at most once: its `key` is unique and names the change (a run's pause at a
given point of its stream, a run's end, a wallet's crossing), so a replayed webhook, a second
worker or a retried task that reaches the same change finds the row already there. Because the
row commits or rolls back with the change, a crash can neither lose a notification nor invent
one. Fanning an event out to people and endpoints happens after commit, from these rows.
"""

from django.conf import settings
from django.db import models


class EventType(models.TextChoices):
    RUN_AWAITING_HUMAN = "run.awaiting_human", "Run waits for a person"
    RUN_AWAITING_APPROVAL = "run.awaiting_approval", "Run waits for approval"
    RUN_SUCCEEDED = "run.succeeded", "Run succeeded"
    RUN_FAILED = "run.failed", "Run failed"
    RUN_CANCELLED = "run.cancelled", "Run cancelled"
    RUN_TIMED_OUT = "run.timed_out", "Run timed out"
    WALLET_LOW_BALANCE = "wallet.low_balance", "Wallet balance is low"
    BUDGET_THRESHOLD = "budget.threshold", "Budget threshold reached"
    BILLING_DISCREPANCY_OPENED = "billing.discrepancy_opened", "Billing discrepancy opened"
    SCHEDULE_SKIPPED = "schedule.skipped", "Scheduled launch skipped"


class OutboxEvent(models.Model):
    """Something happened that people may want to hear about, recorded once."""

    type = models.CharField(max_length=40, choices=EventType.choices)
    team = models.ForeignKey(
        "portal.Team", on_delete=models.CASCADE, related_name="notification_events"
    )
    # What it is about, as "<kind>:<id>" ("run:<uuid>", "account:<id>", "schedule:<id>"):
    # notifications sit below runs and billing, so they name their subjects instead of
    # holding foreign keys to them.
    subject = models.CharField(max_length=80)
    # The event's public `data` (for run events {run_id, status, task, url}; the public
    # payload adds "team", the team's slug, when it is sent: see `public_data`).
    data = models.JSONField(default=dict)
    # Who it is mainly for, where there is one (a run's launcher); None for team-wide events.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    key = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # Set once every channel has its deliveries (fan-out is itself idempotent per event).
    dispatched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["created_at"],
                name="notif_event_undispatched",
                condition=models.Q(dispatched_at__isnull=True),
            ),
            models.Index(fields=["team", "-created_at"], name="notif_event_team_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.subject}"

    def public_data(self) -> dict:
        """`data` as deliveries carry it: with the team's slug."""
        return {**self.data, "team": self.team.slug}
