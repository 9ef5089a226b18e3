import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from billing.keys import run_hold_reference
from portal.teams.models import Team


class RunStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # not yet accepted by Coasty
    # Its maximum cost is above the team's approval threshold: holds its money, not sent to
    # Coasty until a manager approves (then pending) or rejects it (then rejected).
    AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
    SUBMIT_FAILED = "submit_failed", "Submit failed"  # Coasty refused it; nothing ran
    REJECTED = "rejected", "Rejected"  # a manager (or expiry) said no; nothing ran
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    AWAITING_HUMAN = "awaiting_human", "Awaiting human"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    TIMED_OUT = "timed_out", "Timed out"


TERMINAL_STATUSES = frozenset(
    {
        RunStatus.SUBMIT_FAILED,
        RunStatus.REJECTED,
        RunStatus.SUCCEEDED,
        RunStatus.FAILED,
        RunStatus.CANCELLED,
        RunStatus.TIMED_OUT,
    }
)
# Ended without doing the task: these show a failure reason.
FAILED_STATUSES = frozenset(
    {RunStatus.SUBMIT_FAILED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.TIMED_OUT}
)
UPSTREAM_TERMINAL_STATUSES = TERMINAL_STATUSES - {RunStatus.SUBMIT_FAILED, RunStatus.REJECTED}
LIVE_STATUSES = frozenset({RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.AWAITING_HUMAN})
# What Coasty itself can say a run is; pending, awaiting_approval, submit_failed and rejected
# are the portal's own words.
UPSTREAM_STATUSES = LIVE_STATUSES | UPSTREAM_TERMINAL_STATUSES

# How far along the life of a run a status is. Status only moves to an equal or higher rank;
# running and awaiting_human share a rank because a run moves between them as often as a human
# is needed, and which of two such changes is newer is decided by its order upstream (the event
# seq, or the time Coasty stamped on it), never by when it reached us.
STATUS_RANK = {
    RunStatus.AWAITING_APPROVAL: 0,
    RunStatus.PENDING: 0,
    RunStatus.QUEUED: 1,
    RunStatus.RUNNING: 2,
    RunStatus.AWAITING_HUMAN: 2,
    RunStatus.SUCCEEDED: 3,
    RunStatus.FAILED: 3,
    RunStatus.CANCELLED: 3,
    RunStatus.TIMED_OUT: 3,
    RunStatus.SUBMIT_FAILED: 3,
    RunStatus.REJECTED: 3,
}


class CuaVersion(models.TextChoices):
    V5 = "v5", "v5 — latest engine, best at long multi-app tasks"
    V4 = "v4", "v4 — previous engine, steadier on older desktop apps"
    V3 = "v3", "v3 — older engine, kept for workflows tuned on it"
    V1 = "v1", "v1 — legacy engine, slower and priced higher per step"


class OnAwaitingHuman(models.TextChoices):
    PAUSE = "pause", "Pause and wait for someone on the team to resume it"
    FAIL = "fail", "Fail the run"
    CANCEL = "cancel", "Cancel the run"


class PendingAction(models.TextChoices):
    NONE = "", "None"
    CANCEL = "cancel", "Cancel requested"
    RESUME = "resume", "Resume requested"


class Run(models.Model):
    """One task a team asked a Coasty agent to do, and everything the portal knows about it.

    The launch fields are frozen when the run is created: the body sent to Coasty is rebuilt from
    them on every retry, byte for byte, under the same idempotency key.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Not indexed on its own: run_team_recent and run_team_status begin with it (see Meta).
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="runs", db_index=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="runs"
    )
    # The launch form's one-time token: a double click or a resent form finds the run it
    # already created instead of creating a second one.
    launch_token = models.UUIDField(null=True, blank=True, editable=False)

    # --- What to run (sent to Coasty) ---
    machine_id = models.CharField(max_length=128)
    task = models.TextField()
    cua_version = models.CharField(max_length=4, choices=CuaVersion.choices, default=CuaVersion.V5)
    max_steps = models.PositiveIntegerField(default=50)
    deadline_seconds = models.PositiveIntegerField(null=True, blank=True)
    on_awaiting_human = models.CharField(
        max_length=8, choices=OnAwaitingHuman.choices, default=OnAwaitingHuman.PAUSE
    )
    system_prompt = models.TextField(blank=True)
    instructions = models.TextField(blank=True)
    webhook_url = models.URLField(max_length=2048, blank=True)

    # The schedule that launched it (a schedules.Schedule id), None for a person's launch. A
    # plain column, not a foreign key: schedules sit above runs in the layers, and a run and
    # its history outlive a deleted schedule.
    schedule_id = models.UUIDField(null=True, blank=True, editable=False)

    # --- Money, frozen at launch ---
    price_cents = models.PositiveIntegerField(help_text="Price of one completed step.")
    held_cents = models.PositiveIntegerField(help_text="max_steps × price, held at launch.")
    charged_cents = models.PositiveIntegerField(default=0)

    # --- Submission ---
    # Unique by a constraint in Meta, not `unique=True`: that would add a second index for
    # LIKE queries (varchar_pattern_ops) that nothing makes.
    idempotency_key = models.CharField(max_length=128, editable=False)
    # NULL until Coasty accepts the run: unique among runs that have one (a partial constraint).
    upstream_id = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001
    webhook_secret_encrypted = models.TextField(blank=True, editable=False)
    submit_attempts = models.PositiveIntegerField(default=0)
    submit_next_at = models.DateTimeField(null=True, blank=True)

    # --- State ---
    status = models.CharField(max_length=20, choices=RunStatus.choices, default=RunStatus.PENDING)
    status_seq = models.BigIntegerField(
        default=0, help_text="Seq of the stream event that set the status (0: not from the stream)."
    )
    status_at = models.DateTimeField(
        null=True, blank=True, help_text="When Coasty says the status changed."
    )
    last_seq = models.BigIntegerField(default=0, help_text="Highest event seq stored.")
    # Coasty's numbers land in 64-bit columns: a step count above 2**31 must not overflow.
    steps_completed = models.PositiveBigIntegerField(default=0)
    awaiting_human_reason = models.TextField(blank=True)
    pending_action = models.CharField(
        max_length=8, choices=PendingAction.choices, default=PendingAction.NONE, blank=True
    )
    resume_note = models.TextField(blank=True)
    # Who asked for the resume now pending: Coasty's `resumed` event names them as its actor
    # when it arrives (then this is cleared, so a resume made elsewhere is not pinned on them).
    resume_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
        db_index=False,  # indexed where set only (Meta: run_resume_requested_by)
    )
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)

    # --- Following and settling ---
    follow_owner = models.CharField(max_length=96, blank=True)
    follow_lease_until = models.DateTimeField(null=True, blank=True)
    last_event_at = models.DateTimeField(null=True, blank=True)
    # The run's whole event log is stored (its `done` arrived). A run that ended before any
    # follower attached is still followed, once, until this is true (runs_to_follow).
    events_complete = models.BooleanField(default=False)
    upstream_steps_completed = models.PositiveBigIntegerField(null=True, blank=True)
    upstream_credits_charged = models.PositiveBigIntegerField(null=True, blank=True)
    settled_at = models.DateTimeField(null=True, blank=True)

    # --- Approval (a launch above the team's approval threshold) ---
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The manager who approved or rejected it (none when it expired).",
        db_index=False,  # indexed where set only (Meta: run_decided_by)
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)

    # --- Convergence: whatever Coasty does, the run ends and its money is final ---
    # The exact body of POST /v1/runs, frozen at launch: nothing mutable (the team's slug) is
    # read at submit time, so a retry under the same key can never be refused as another body.
    submit_body = models.JSONField(null=True, blank=True, editable=False)
    # Whether the key the run was launched under was a test key (bills nothing upstream):
    # reconciliation compares with the run's own mode, not with today's key.
    test_mode = models.BooleanField(null=True, blank=True, editable=False)
    # When GET /v1/runs/{id} first answered 404; cleared when Coasty knows the run again.
    upstream_missing_since = models.DateTimeField(null=True, blank=True)
    # Settled on what the portal captured because Coasty's own figures could not be had
    # (Coasty forgot the run, or it never ended there); a discrepancy is open for it.
    lost_upstream_at = models.DateTimeField(null=True, blank=True)
    # A Coasty run created under this run's key after the run was closed here: cancelled
    # upstream and recorded as a discrepancy, never charged to the team silently.
    orphan_upstream_id = models.CharField(max_length=128, blank=True)
    orphan_cancelled_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["idempotency_key"], name="run_idempotency_key_unique"),
            models.UniqueConstraint(
                fields=["upstream_id"],
                condition=Q(upstream_id__isnull=False),
                name="run_upstream_id_unique",
            ),
            models.UniqueConstraint(
                fields=["created_by", "launch_token"],
                condition=Q(launch_token__isnull=False),
                name="run_launch_token_unique_per_user",
            ),
            models.CheckConstraint(
                condition=Q(status__in=RunStatus.values), name="run_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(charged_cents__lte=models.F("held_cents")),
                name="run_charged_within_hold",
            ),
            models.CheckConstraint(
                condition=Q(max_steps__gte=1) & Q(max_steps__lte=1000), name="run_max_steps_range"
            ),
        ]
        # Every status change writes a new row version into every index (status is indexed,
        # so no update is HOT): each index here is paid for by every webhook and every batch of
        # events. The user references are indexed where set only (for a user's deletion).
        indexes = [
            models.Index(fields=["team", "-created_at", "-id"], name="run_team_recent"),
            models.Index(fields=["team", "status", "-created_at"], name="run_team_status"),
            models.Index(fields=["status", "follow_lease_until"], name="run_follow_claim"),
            models.Index(
                fields=["resume_requested_by"],
                condition=Q(resume_requested_by__isnull=False),
                name="run_resume_requested_by",
            ),
            models.Index(
                fields=["decided_by"], condition=Q(decided_by__isnull=False), name="run_decided_by"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task[:40]} ({self.status})"

    @property
    def hold_reference(self) -> str:
        return run_hold_reference(self.id)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def is_live(self) -> bool:
        return not self.is_terminal

    @property
    def can_cancel(self) -> bool:
        return self.status in LIVE_STATUSES | {RunStatus.PENDING, RunStatus.AWAITING_APPROVAL} and (
            self.pending_action != PendingAction.CANCEL
        )

    @property
    def awaits_approval(self) -> bool:
        return self.status == RunStatus.AWAITING_APPROVAL

    @property
    def was_approved(self) -> bool:
        return self.decided_at is not None and self.status != RunStatus.REJECTED

    @property
    def can_resume(self) -> bool:
        return self.status == RunStatus.AWAITING_HUMAN and not self.pending_action

    @property
    def progress_percent(self) -> int:
        return min(100, round(100 * self.steps_completed / self.max_steps)) if self.max_steps else 0

    @property
    def spend_percent(self) -> int:
        return min(100, round(100 * self.charged_cents / self.held_cents)) if self.held_cents else 0

    @property
    def released_cents(self) -> int:
        return self.held_cents - self.charged_cents if self.settled_at else 0

    @property
    def duration_seconds(self) -> int | None:
        """From launch to the end (or to now, while it lasts); None if the clock is unknown."""
        if self.created_at is None:
            return None
        end = self.finished_at or (None if self.is_terminal else timezone.now())
        if end is None:
            return None
        return max(0, int((end - self.created_at).total_seconds()))

    @property
    def failure_reason(self) -> str:
        """Why a run that did not succeed ended, in words; "" for the others."""
        if self.status not in FAILED_STATUSES:
            return ""
        if self.error:
            return self.error
        return {
            RunStatus.TIMED_OUT: "It ran past its deadline.",
            RunStatus.CANCELLED: "It was cancelled.",
            RunStatus.FAILED: "Coasty did not say why.",
            RunStatus.SUBMIT_FAILED: "Coasty refused the run.",
        }[RunStatus(self.status)]

    @property
    def still_held_cents(self) -> int:
        return 0 if self.settled_at else self.held_cents - self.charged_cents

    @property
    def hold_remaining_cents(self) -> int:
        """What the run's hold still reserves now: 0 once its money is final (settled_at)."""
        return self.still_held_cents


def runs_to_follow() -> models.QuerySet[Run]:
    """Runs a follower should read the stream of: live ones, and ended ones whose event log is
    not stored whole yet (a short run that ended before any follower attached is backfilled)."""
    return Run.objects.filter(upstream_id__isnull=False).filter(
        Q(status__in=LIVE_STATUSES)
        | Q(status__in=UPSTREAM_TERMINAL_STATUSES, events_complete=False)
    )


class RunEvent(models.Model):
    """One event of a run's Coasty stream, stored once per (run, seq) whoever brought it."""

    # Indexed by the unique (run, seq) it leads: an index of its own would only be one more to
    # write for every event the follower stores (`make bench`, "ingest").
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events", db_index=False)
    seq = models.BigIntegerField()
    type = models.CharField(max_length=32)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    # The person who caused it, where one did (a `resumed` asked for in the portal); indexed
    # only where set, since almost every event has none.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )

    source = "coasty"

    class Meta:
        ordering = ["run", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["run", "seq"], name="run_event_unique_seq"),
        ]
        indexes = [
            models.Index(
                fields=["actor"], condition=models.Q(actor__isnull=False), name="run_event_actor"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.run_id} #{self.seq} {self.type}"


class RunActivity(models.Model):
    """One thing a person did to a run in the portal (asked for a cancel, approved, rejected),
    recorded by the portal itself beside Coasty's stream.

    Not a RunEvent: Coasty's seq numbers are Coasty's (the follower resumes from the highest
    one stored), so the portal's own records never take one. Each is placed in the timeline
    after the Coasty event it followed (`after_seq`, the run's last_seq when it was recorded).
    """

    class Kind(models.TextChoices):
        CANCEL_REQUESTED = "cancel_requested", "Cancel requested"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="activities")
    kind = models.CharField(max_length=32)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    after_seq = models.BigIntegerField(default=0)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "after_seq", "id"]
        indexes = [models.Index(fields=["run", "after_seq"], name="run_activity_place")]
        verbose_name_plural = "run activities"

    def __str__(self) -> str:
        return f"{self.run_id} after #{self.after_seq} {self.kind}"

    def as_event(self) -> RunEvent:
        """The record as the timeline and the API show events: placed at `after_seq`, with
        `source` "portal" (never saved as a RunEvent)."""
        event = RunEvent(
            run_id=self.run_id,
            seq=self.after_seq,
            type=self.kind,
            data=self.data,
            created_at=self.created_at,
            actor=self.actor,
        )
        event.source = "portal"
        return event


class WebhookDelivery(models.Model):
    """One POST to a run's webhook URL and what we made of it.

    A verified delivery is kept verbatim (its body is Coasty's, and bounded). A refused one is
    only a sample: its hash, its size and its first bytes, and only some refusals are sampled at
    all (runs.services.webhooks); WebhookRefusalCount counts every one. An unauthenticated
    sender can therefore not fill the database.
    """

    class Verdict(models.TextChoices):
        RECEIVED = "received", "Received"
        ACCEPTED = "accepted", "Accepted"
        DUPLICATE = "duplicate", "Duplicate (already applied)"
        DEFERRED = "deferred", "Deferred (run not yet accepted)"
        MALFORMED = "malformed", "Refused: malformed"
        BAD_SIGNATURE = "bad_signature", "Refused: bad signature"
        STALE = "stale", "Refused: stale timestamp"
        FAILED = "failed", "Failed while processing"
        THROTTLED = "throttled", "Refused: too many refusals (rate limit)"

    # Not indexed on its own: the dedupe constraint's index begins with it (see Meta).
    run = models.ForeignKey(
        Run, on_delete=models.CASCADE, related_name="webhook_deliveries", db_index=False
    )
    received_at = models.DateTimeField(auto_now_add=True)
    headers = models.JSONField(default=dict)
    body = models.BinaryField(help_text="Verbatim when verified; the first bytes when refused.")
    body_sha256 = models.CharField(max_length=64)
    # The whole body's size (a refused body is kept truncated) and who sent it.
    body_size = models.PositiveIntegerField(null=True, blank=True)
    client_address = models.GenericIPAddressField(null=True, blank=True)
    verdict = models.CharField(max_length=16, choices=Verdict.choices, default=Verdict.RECEIVED)
    event = models.CharField(max_length=64, blank=True)
    # Set only on the first accepted delivery of a body: a retry or a duplicate of the same
    # event carries the same body, and the unique constraint lets exactly one of them through.
    dedupe_key = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    result = models.TextField(blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        # One index serves both the dedupe and a run's deliveries: rows without a dedupe key
        # (duplicates, refusals, failures) are in it too, and NULLs never conflict.
        constraints = [
            models.UniqueConstraint(fields=["run", "dedupe_key"], name="webhook_delivery_dedupe"),
        ]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.event or 'delivery'} for {self.run_id}: {self.verdict}"


class WebhookRefusalCount(models.Model):
    """How many deliveries to one run's webhook URL were refused with one verdict: every
    refusal is counted here, while only a few are sampled as WebhookDelivery rows.

    `throttled` counts are kept to within a factor of two (runs.services.webhooks): counting
    each request refused by the rate limit exactly would cost the write it exists to spare.
    """

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="webhook_refusal_counts")
    verdict = models.CharField(max_length=16, choices=WebhookDelivery.Verdict.choices)
    count = models.PositiveBigIntegerField(default=0)
    bytes_refused = models.PositiveBigIntegerField(default=0)
    first_at = models.DateTimeField(auto_now_add=True)
    last_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-last_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "verdict"], name="webhook_refusal_count_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.run_id}: {self.count} {self.verdict}"


class FollowerSlot(models.Model):
    """One of the few stream followers allowed to run at once, held under a lease.

    A follower task follows hundreds of runs in one process; capping how many run together keeps
    the other worker processes free to submit, settle and cancel. A crashed follower's lease
    simply expires.
    """

    number = models.PositiveSmallIntegerField(unique=True)
    owner = models.CharField(max_length=96, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"follower slot {self.number}"
