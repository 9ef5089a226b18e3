import datetime as dt

from django import forms

from runs.forms import (
    MACHINE_ID_MAX,
    MAX_STEPS_MAX,
    TASK_MAX,
    DeadlineInMinutes,
    DeadlineMinutesField,
)
from runs.models import CuaVersion, OnAwaitingHuman
from schedules import cron
from schedules.models import CatchUp

DAY_OF_MONTH_CHOICES = [(str(day), str(day)) for day in range(1, 29)] + [("L", "last day")]


class ScheduleForm(DeadlineInMinutes):
    """A schedule: when (a preset or a cron expression, in a zone) and the run to launch."""

    name = forms.CharField(
        max_length=100,
        help_text="e.g. “Weekday lead export”.",
        error_messages={"required": "Give the schedule a name."},
    )
    preset = forms.ChoiceField(
        label="Repeats", choices=cron.Preset.CHOICES, initial=cron.Preset.DAILY
    )
    at = forms.TimeField(
        label="At",
        required=False,
        initial=dt.time(9, 0),
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        help_text="Local time in the zone below (for “every hour”, only the minutes count).",
    )
    weekday = forms.TypedChoiceField(
        label="On (weekly)",
        coerce=int,
        required=False,
        initial=1,
        choices=list(enumerate(cron.WEEKDAYS)),
    )
    day_of_month = forms.ChoiceField(
        label="Day of the month (monthly)",
        required=False,
        initial="1",
        choices=DAY_OF_MONTH_CHOICES,
    )
    cron = forms.CharField(
        label="Cron expression",
        required=False,
        max_length=cron.CRON_MAX_LENGTH,
        help_text="Custom only: minute hour day-of-month month day-of-week, e.g. “0 9 * * 1-5”.",
        widget=forms.TextInput(attrs={"spellcheck": "false", "autocomplete": "off"}),
    )
    timezone = forms.CharField(
        label="Time zone",
        max_length=64,
        initial="UTC",
        help_text="An IANA zone such as Europe/Berlin; the times above are local times there, "
        "daylight saving included.",
        widget=forms.TextInput(attrs={"list": "zones", "autocomplete": "off"}),
    )
    catch_up = forms.ChoiceField(
        label="If the portal was down at a scheduled time",
        choices=CatchUp.choices,
        initial=CatchUp.SKIP,
        widget=forms.RadioSelect,
    )
    enabled = forms.BooleanField(label="Enabled", required=False, initial=True)
    machine_id = forms.CharField(
        label="Machine",
        max_length=MACHINE_ID_MAX,
        widget=forms.TextInput(attrs={"list": "machines", "autocomplete": "off"}),
        error_messages={"required": "Choose a machine."},
    )
    task = forms.CharField(
        label="Task",
        max_length=TASK_MAX,
        widget=forms.Textarea(attrs={"rows": 4}),
        error_messages={"required": "Describe the task for the agent."},
    )
    cua_version = forms.ChoiceField(
        label="Agent engine", choices=CuaVersion.choices, initial=CuaVersion.V5
    )
    max_steps = forms.IntegerField(
        label="Maximum steps", min_value=1, max_value=MAX_STEPS_MAX, initial=20
    )
    deadline_minutes = DeadlineMinutesField(help_text="Optional; each run times out after it.")
    on_awaiting_human = forms.ChoiceField(
        label="When the agent needs a human",
        choices=OnAwaitingHuman.choices,
        initial=OnAwaitingHuman.PAUSE,
    )

    def clean_timezone(self):
        value = self.cleaned_data["timezone"].strip()
        try:
            cron.zone_for(value)
        except cron.InvalidSchedule as exc:
            raise forms.ValidationError(str(exc)) from None
        return value

    def clean_machine_id(self):
        value = self.cleaned_data["machine_id"].strip()
        if not value:
            raise forms.ValidationError("Choose a machine.")
        return value

    def clean_task(self):
        value = self.cleaned_data["task"].strip()
        if not value:
            raise forms.ValidationError("Describe the task for the agent.")
        return value

    def clean(self):
        cleaned = super().clean() or self.cleaned_data
        preset = cleaned.get("preset")
        if preset == cron.Preset.CUSTOM:
            expression = cleaned.get("cron") or ""
        elif preset:
            if cleaned.get("at") is None:
                self.add_error("at", "Give the time of day.")
                return cleaned
            expression = cron.cron_for_preset(
                preset,
                at=cleaned["at"],
                weekday=cleaned.get("weekday") or 0,
                day_of_month=cleaned.get("day_of_month") or "1",
            )
        else:
            return cleaned
        try:
            cleaned["cron"] = cron.validate_cron(expression)
        except cron.InvalidSchedule as exc:
            self.add_error("cron", str(exc))
        return cleaned

    def schedule_values(self) -> dict:
        names = (
            "name",
            "cron",
            "timezone",
            "enabled",
            "catch_up",
            "machine_id",
            "task",
            "cua_version",
            "max_steps",
            "deadline_seconds",
            "on_awaiting_human",
        )
        return {name: self.cleaned_data[name] for name in names}

    @staticmethod
    def initial_for(schedule) -> dict:
        """The form's fields for an existing schedule (its cron shown as a preset if it is one)."""
        initial = {
            name: getattr(schedule, name)
            for name in (
                "name",
                "timezone",
                "enabled",
                "catch_up",
                "machine_id",
                "task",
                "cua_version",
                "max_steps",
                "deadline_seconds",
                "on_awaiting_human",
            )
        }
        initial.update(cron.preset_of(schedule.cron))
        initial.setdefault("cron", schedule.cron)
        return initial
