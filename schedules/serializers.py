"""What the schedule endpoints take and answer. Output serializers only read."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from portal.core.rest.fields import (
    StrictCharField,
    StrictChoiceField,
    StrictInputSerializer,
    StrictIntegerField,
)
from portal.core.rest.pages import page_serializer
from runs.forms import DEADLINE_MAX, MACHINE_ID_MAX, MAX_STEPS_MAX, TASK_MAX
from runs.models import CuaVersion, OnAwaitingHuman
from schedules import cron, selectors
from schedules.models import CatchUp, LaunchOutcome


class StrictBooleanField(serializers.BooleanField):
    default_error_messages = {"invalid": "Give true or false (a JSON boolean)."}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class ScheduleRunSerializer(serializers.Serializer):
    """The run each occurrence launches: the run's launch fields."""

    machine_id = serializers.CharField()
    task = serializers.CharField()
    cua_version = serializers.ChoiceField(choices=CuaVersion.choices)
    max_steps = serializers.IntegerField()
    deadline_seconds = serializers.IntegerField(allow_null=True)
    on_awaiting_human = serializers.ChoiceField(choices=OnAwaitingHuman.choices)


class ScheduleSerializer(serializers.Serializer):
    """A schedule: when it fires, the run it launches, and its next five occurrences."""

    id = serializers.UUIDField()
    name = serializers.CharField()
    cron = serializers.CharField(
        help_text="Five fields: minute hour day-of-month month day-of-week."
    )
    timezone = serializers.CharField(help_text="The IANA zone the cron expression is read in.")
    enabled = serializers.BooleanField()
    catch_up = serializers.ChoiceField(choices=CatchUp.choices)
    run = serializers.SerializerMethodField()
    next_occurrences = serializers.SerializerMethodField()
    created_by = serializers.CharField(
        source="created_by.username", allow_null=True, help_text="The owner; runs launch as them."
    )

    @extend_schema_field(ScheduleRunSerializer)
    def get_run(self, schedule) -> dict:
        return ScheduleRunSerializer(schedule).data

    @extend_schema_field(serializers.ListField(child=serializers.DateTimeField()))
    def get_next_occurrences(self, schedule) -> list[str]:
        """ISO 8601 with the zone's offset. While paused (`enabled` false), the times it
        would fire from now once resumed (a resume restarts its clock from now)."""
        instants = selectors.preview(schedule.cron, schedule.timezone)
        return [instant.isoformat() for instant in instants]


class ScheduleLaunchSerializer(serializers.Serializer):
    """One occurrence: the run it launched, or why it was skipped."""

    occurrence = serializers.DateTimeField()
    run = serializers.UUIDField(source="run_id", allow_null=True)
    outcome = serializers.ChoiceField(choices=LaunchOutcome.choices)
    reason = serializers.CharField(help_text="Why it was skipped; empty when launched.")


SchedulePageSerializer = page_serializer(ScheduleSerializer, "SchedulePage")
ScheduleLaunchPageSerializer = page_serializer(ScheduleLaunchSerializer, "ScheduleLaunchPage")


class ScheduleRunInputSerializer(StrictInputSerializer):
    machine_id = StrictCharField(max_length=MACHINE_ID_MAX)
    task = StrictCharField(max_length=TASK_MAX)
    cua_version = StrictChoiceField(choices=CuaVersion.choices, default=CuaVersion.V5)
    max_steps = StrictIntegerField(min_value=1, max_value=MAX_STEPS_MAX, default=50)
    deadline_seconds = StrictIntegerField(
        min_value=1, max_value=DEADLINE_MAX, required=False, allow_null=True, default=None
    )
    on_awaiting_human = StrictChoiceField(
        choices=OnAwaitingHuman.choices, default=OnAwaitingHuman.PAUSE
    )

    def validate_machine_id(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("Choose a machine.")
        return value.strip()

    def validate_task(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("Describe the task for the agent.")
        return value.strip()


class ScheduleInputSerializer(StrictInputSerializer):
    """A new schedule (POST), or some of its fields (PATCH, with partial=True)."""

    name = StrictCharField(max_length=100)
    cron = StrictCharField(max_length=cron.CRON_MAX_LENGTH, help_text="e.g. `0 9 * * 1-5`.")
    timezone = StrictCharField(max_length=64, default="UTC")
    enabled = StrictBooleanField(default=True)
    catch_up = StrictChoiceField(choices=CatchUp.choices, default=CatchUp.SKIP)
    run = ScheduleRunInputSerializer()

    def validate_name(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("Give the schedule a name.")
        return value.strip()

    def validate_cron(self, value: str) -> str:
        try:
            return cron.validate_cron(value)
        except cron.InvalidSchedule as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate_timezone(self, value: str) -> str:
        try:
            cron.zone_for(value)
        except cron.InvalidSchedule as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value
