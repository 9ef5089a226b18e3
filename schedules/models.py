import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from portal.teams.models import Team
from runs.models import CuaVersion, OnAwaitingHuman


class CatchUp(models.TextChoices):
    SKIP = "skip", "Skip what was missed"
    ONCE = "once", "Run once for the latest missed time"


class Schedule(models.Model):
    """A run a team wants launched again and again: a cron expression in a time zone, and the
    launch fields of the run. Each occurrence launches at most one run, as its owner
    (`created_by`), from the team's wallet, through the same launch service as the form.

    `next_occurrence_at` is the first occurrence not yet dealt with (NULL while paused): the
    tick finds due schedules by it, through a partial index, so an idle tick is one indexed
    query however many schedules there are.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="schedules")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="schedules"
    )
    name = models.CharField(max_length=100)
    cron = models.CharField(max_length=100)
    timezone = models.CharField(max_length=64, default="UTC")
    enabled = models.BooleanField(default=True)
    catch_up = models.CharField(max_length=4, choices=CatchUp.choices, default=CatchUp.SKIP)

    # --- The run template (the launch fields) ---
    machine_id = models.CharField(max_length=128)
    task = models.TextField()
    cua_version = models.CharField(max_length=4, choices=CuaVersion.choices, default=CuaVersion.V5)
    max_steps = models.PositiveIntegerField(default=50)
    deadline_seconds = models.PositiveIntegerField(null=True, blank=True)
    on_awaiting_human = models.CharField(
        max_length=8, choices=OnAwaitingHuman.choices, default=OnAwaitingHuman.PAUSE
    )

    # --- Where the clock is ---
    next_occurrence_at = models.DateTimeField(null=True, blank=True)
    last_occurrence_at = models.DateTimeField(null=True, blank=True)
    # Why the schedule paused itself ("" when a person paused it, or it is enabled).
    paused_reason = models.TextField(blank=True)
    # When it was last enabled: the failures that pause it are counted from here, so a
    # schedule someone resumed does not pause again for the failures it paused for.
    enabled_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        indexes = [
            models.Index(
                fields=["next_occurrence_at"],
                condition=Q(enabled=True),
                name="schedule_due",
            ),
            models.Index(fields=["team", "name"], name="schedule_team_name"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(max_steps__gte=1) & Q(max_steps__lte=1000),
                name="schedule_max_steps_range",
            ),
            models.CheckConstraint(
                condition=Q(catch_up__in=CatchUp.values), name="schedule_catch_up_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.cron} {self.timezone})"


class LaunchOutcome(models.TextChoices):
    LAUNCHED = "launched", "Launched"
    SKIPPED = "skipped", "Skipped"


class ScheduleLaunch(models.Model):
    """What became of one occurrence of a schedule: the run it launched, or why it was skipped.

    At most one row per (schedule, occurrence instant), under a unique constraint, written in
    the same transaction as the run it launched: however many ticks, workers or clock steps
    reach an occurrence, one of them records it and the others find it taken.
    """

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="launches")
    occurrence = models.DateTimeField()
    outcome = models.CharField(max_length=8, choices=LaunchOutcome.choices)
    run = models.ForeignKey(
        "runs.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.TextField(blank=True)
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-occurrence", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["schedule", "occurrence"], name="schedule_launch_once_per_occurrence"
            ),
            models.CheckConstraint(
                condition=Q(outcome__in=LaunchOutcome.values), name="schedule_launch_outcome_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.schedule_id} @ {self.occurrence.isoformat()}: {self.outcome}"

    @property
    def lateness_seconds(self) -> float:
        return (self.recorded_at - self.occurrence).total_seconds()
