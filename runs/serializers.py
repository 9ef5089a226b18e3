"""What the runs endpoints take and answer. Output serializers only read; the services write."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from portal.core.rest.fields import (
    StrictCharField,
    StrictChoiceField,
    StrictInputSerializer,
    StrictIntegerField,
)
from portal.core.rest.pages import LimitField, page_serializer
from runs.forms import (
    DEADLINE_MAX,
    INSTRUCTIONS_MAX,
    MACHINE_ID_MAX,
    MAX_STEPS_MAX,
    SYSTEM_PROMPT_MAX,
    TASK_MAX,
)
from runs.models import CuaVersion, OnAwaitingHuman, RunStatus

RESUME_NOTE_MAX = 2000  # Coasty's ResumeRunRequest.note, as on the run page's form


class RunSerializer(serializers.Serializer):
    """A run: what was asked, where it is, and what it has cost."""

    id = serializers.UUIDField()
    team = serializers.SlugField(source="team.slug")
    status = serializers.ChoiceField(
        choices=RunStatus.choices,
        help_text="`pending` until Coasty accepts the run, then Coasty's status; "
        "`submit_failed` when Coasty refused it (see `error`); `awaiting_approval` while a "
        "manager must approve it, `rejected` when one refused it (or it expired).",
    )
    machine_id = serializers.CharField()
    task = serializers.CharField()
    cua_version = serializers.ChoiceField(choices=CuaVersion.choices)
    max_steps = serializers.IntegerField()
    deadline_seconds = serializers.IntegerField(allow_null=True)
    on_awaiting_human = serializers.ChoiceField(choices=OnAwaitingHuman.choices)
    steps_completed = serializers.IntegerField()
    held_cents = serializers.IntegerField(help_text="max_steps × step price, held at launch.")
    charged_cents = serializers.IntegerField(help_text="Charged so far, one step price per step.")
    hold_remaining_cents = serializers.IntegerField(
        help_text="What the run's hold still reserves now; 0 once its money is final."
    )
    settled_at = serializers.DateTimeField(
        allow_null=True, help_text="When the run's money became final; null until then."
    )
    lost_upstream_at = serializers.DateTimeField(
        allow_null=True,
        help_text="When the run was settled without Coasty's figures (Coasty forgot it, or did "
        "not answer past its deadline): charged what the portal captured, and a discrepancy "
        "opened for a billing admin. Null for every run Coasty accounted for.",
    )
    upstream_id = serializers.CharField(allow_null=True, help_text="Coasty's id for the run.")
    created_by = serializers.CharField(
        source="created_by.username", allow_null=True, help_text="Who launched it."
    )
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    error = serializers.SerializerMethodField()
    schedule = serializers.UUIDField(
        source="schedule_id", allow_null=True, help_text="The schedule that launched it, if any."
    )
    decided_by = serializers.CharField(
        source="decided_by.username",
        allow_null=True,
        help_text="The manager who approved or rejected it (null: no decision, or it expired).",
    )
    decided_at = serializers.DateTimeField(allow_null=True)
    decision_reason = serializers.SerializerMethodField()

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_decision_reason(self, run) -> str | None:
        return run.decision_reason or None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_error(self, run) -> str | None:
        return run.error or None


class RunEventSerializer(serializers.Serializer):
    """One event of the run's Coasty stream, as stored."""

    seq = serializers.IntegerField(help_text="The run's event sequence number, from 1.")
    type = serializers.CharField(help_text="status, text, reasoning, tool_call, … done.")
    data = serializers.JSONField(  # type: ignore[assignment]  # a field named like Serializer.data
        help_text="The event's data as Coasty sent it, read strictly: a value no JSON store takes "
        "(NaN, infinity) is null and noted under `_portal.refused`; an event too large to keep "
        "has only `_portal.oversize_bytes`."
    )
    created_at = serializers.DateTimeField(help_text="When the portal stored it.")
    actor = serializers.SerializerMethodField(
        help_text="The username of the person who caused it (resumed, cancel_requested, "
        "approved, rejected), or null."
    )

    def get_actor(self, event) -> str | None:
        actor = event.actor
        return actor.get_username() if actor is not None else None


RunPageSerializer = page_serializer(RunSerializer, "RunPage")
RunEventPageSerializer = page_serializer(RunEventSerializer, "RunEventPage")


class RunListQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=[("live", "Live (not ended)"), *RunStatus.choices],
        required=False,
        help_text="Only runs in this status; `live` for every run that has not ended.",
    )
    cursor = serializers.CharField(
        required=False, max_length=200, help_text="From `next`: where the page starts."
    )
    limit = LimitField()


class RunEventsQuerySerializer(serializers.Serializer):
    after = serializers.IntegerField(
        required=False,
        default=0,
        min_value=0,
        max_value=2**63 - 1,
        help_text="Only events with a higher seq (the last seq you have).",
    )
    limit = LimitField(max_value=500, default=100)


class RunLaunchInputSerializer(StrictInputSerializer):
    """The launch fields, with Coasty's limits (the launch form's)."""

    machine_id = StrictCharField(max_length=MACHINE_ID_MAX, help_text="The Coasty machine to use.")
    task = StrictCharField(max_length=TASK_MAX, help_text="What the agent should do.")
    cua_version = StrictChoiceField(choices=CuaVersion.choices, default=CuaVersion.V5)
    max_steps = StrictIntegerField(
        min_value=1,
        max_value=MAX_STEPS_MAX,
        default=50,
        help_text="The run stops here; max_steps × step price is held from the wallet.",
    )
    deadline_seconds = StrictIntegerField(
        min_value=1, max_value=DEADLINE_MAX, required=False, allow_null=True, default=None
    )
    on_awaiting_human = StrictChoiceField(
        choices=OnAwaitingHuman.choices, default=OnAwaitingHuman.PAUSE
    )
    instructions = StrictCharField(
        max_length=INSTRUCTIONS_MAX, required=False, allow_blank=True, allow_null=True, default=""
    )
    system_prompt = StrictCharField(
        max_length=SYSTEM_PROMPT_MAX, required=False, allow_blank=True, allow_null=True, default=""
    )


class RunResumeInputSerializer(StrictInputSerializer):
    note = StrictCharField(
        max_length=RESUME_NOTE_MAX,
        required=False,
        allow_blank=True,
        allow_null=True,
        default="",
        help_text="Recorded on the run's timeline.",
    )


class RunRejectInputSerializer(StrictInputSerializer):
    reason = StrictCharField(
        max_length=2000, help_text="Why: recorded on the run, and the launcher reads it."
    )
