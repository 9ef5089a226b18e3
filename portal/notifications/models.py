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
    # The team and the user are references without a database constraint: with one, each
    # transaction that records an event share-locks the team's row and the launcher's (at its
    # commit: Django's constraints are deferred). Webhooks, batches of events and wallet
    # alerts record events in their transactions, so a team's concurrent writers would all lock
    # the same rows, and PostgreSQL makes a new multixact each time a lock joins others on a
    # row (`make bench`, "webhook", two A/B pairs: open-loop p99 184 and 371 ms with them, 98
    # and 111 ms without).
    # Deleting a team or a user still cascades or clears these in Django's collector, as
    # on_delete says. Not indexed on its own: notif_event_team_recent begins with it.
    team = models.ForeignKey(
        "portal.Team",
        on_delete=models.CASCADE,
        related_name="notification_events",
        db_index=False,
        db_constraint=False,
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
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
    )
    # Unique by a constraint in Meta (no second index for LIKE queries, which nothing makes).
    key = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # Set once every channel has its deliveries (fan-out is itself idempotent per event).
    dispatched_at = models.DateTimeField(null=True, blank=True)
    # How many fan-outs of it have committed: 0 until the first, which therefore knows no row
    # of the event exists yet; more once an email that could not be sent reopened it.
    fan_outs = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["key"], name="notif_event_key_unique")]
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
        """`data` as deliveries carry it: with the team's slug. A run event's is exactly the
        contract's {run_id, team, status, task, url}; what else it keeps (the cost so far,
        for Slack's message) stays inside the portal."""
        data = {**self.data, "team": self.team.slug}
        if self.type.startswith("run."):
            data = {key: data[key] for key in RUN_EVENT_FIELDS if key in data}
        return data


# The public `data` of every run.* event (docs: the contract's notifications section).
RUN_EVENT_FIELDS = ("run_id", "team", "status", "task", "url")

# Not an outbox event: what the portal tells an endpoint's managers when it disables it, and
# what a test-send carries. Notifications and deliveries store their type as a string.
ENDPOINT_DISABLED = "endpoint.disabled"
WEBHOOK_TEST = "webhook.test"


class Notification(models.Model):
    """One thing one person is told in the portal (the bell, /notifications/), once per event.

    Text and link are written when the event is fanned out, so the list reads without knowing
    each event type. `email_sent_at` marks the one email for it, claimed before it is sent.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    event = models.ForeignKey(
        OutboxEvent, null=True, blank=True, on_delete=models.CASCADE, related_name="notifications"
    )
    type = models.CharField(max_length=40)
    text = models.CharField(max_length=300)
    url = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)
    email_sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # Fan-out may run twice for one event (the sweep and the on-commit task): one each.
            models.UniqueConstraint(fields=["event", "user"], name="notification_once_per_user"),
        ]
        indexes = [
            models.Index(
                fields=["user"],
                name="notification_unread",
                condition=models.Q(read_at__isnull=True),
            ),
            models.Index(fields=["user", "-created_at"], name="notification_user_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.user}: {self.text}"


class EmailPreference(models.Model):
    """A person's choice to get (or not) an email for one event type; without a row, the
    default for that type applies (see `portal.notifications.recipients.EMAIL_DEFAULTS`)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="email_preferences"
    )
    event_type = models.CharField(max_length=40, choices=EventType.choices)
    enabled = models.BooleanField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "event_type"], name="email_preference_once_per_type"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.event_type}: {'on' if self.enabled else 'off'}"


class EndpointFormat(models.TextChoices):
    STANDARD = "standard", "Standard Webhooks (signed JSON)"
    SLACK = "slack", "Slack incoming webhook"


class WebhookEndpoint(models.Model):
    """A team's URL that hears about the event types it subscribes to.

    The signing secret is stored encrypted; during a rotation the previous one keeps signing
    too (both signatures are sent) until `previous_secret_until`.
    """

    team = models.ForeignKey(
        "portal.Team", on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    url = models.URLField(max_length=500)
    format = models.CharField(
        max_length=10, choices=EndpointFormat.choices, default=EndpointFormat.STANDARD
    )
    events = models.JSONField(default=list)  # event type strings
    description = models.CharField(max_length=200, blank=True)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=200, blank=True)
    secret_encrypted = models.TextField()
    previous_secret_encrypted = models.TextField(blank=True)
    previous_secret_until = models.DateTimeField(null=True, blank=True)
    # Deliveries in a row that ended `failed`; reset by any success. Too many disables it.
    failed_streak = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.team}: {self.url}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"


class WebhookDelivery(models.Model):
    """One event (or test) to send to one endpoint, retried until a 2xx or the last attempt.

    `webhook_id` and `body` are fixed when the row is made, so every attempt, including one that
    follows a worker killed mid-send, carries the same id and body. A worker claims an attempt
    by taking the lease (`lease_until`); a lease that runs out belongs to a dead worker and the
    sweep hands the delivery to another.
    """

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.ForeignKey(
        OutboxEvent, null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries"
    )
    event_type = models.CharField(max_length=40)
    webhook_id = models.CharField(max_length=64, unique=True)
    body = models.TextField()  # the exact bytes signed and sent (UTF-8 JSON)
    status = models.CharField(
        max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    # Attempts before this round (a manual re-send starts a new round of retries).
    round_start = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    lease_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "event"],
                condition=models.Q(event__isnull=False),
                name="delivery_once_per_endpoint_event",
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="delivery_due",
                condition=models.Q(status="pending"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} to {self.endpoint_id} ({self.status})"


class DeliveryAttempt(models.Model):
    """One try at sending a delivery: written when the worker claims it, completed with the
    answer. One left without an answer is a worker that stopped mid-send."""

    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log"
    )
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    # Only the first bytes of the answer: a receiver's body is not ours to keep.
    response_prefix = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["number"]
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="attempt_once_per_number")
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.delivery_id}"
