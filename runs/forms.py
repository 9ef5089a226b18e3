import math

from django import forms

from portal.core.forms import FilterDateField
from runs.models import CuaVersion, OnAwaitingHuman

# Upstream's limits (RunRequest in the Coasty reference), checked here so a person sees them
# as form errors instead of a submit that fails later.
TASK_MAX = 16_000
INSTRUCTIONS_MAX = 16_000
SYSTEM_PROMPT_MAX = 32_000
MACHINE_ID_MAX = 128
MAX_STEPS_MAX = 1000
DEADLINE_MAX = 86_400
DEADLINE_MAX_MINUTES = DEADLINE_MAX // 60


class DeadlineMinutesField(forms.IntegerField):
    """The deadline as people think of it, in whole minutes (1 to a day). Runs, schedules and the
    API keep seconds: `DeadlineInMinutes` turns one into the other."""

    def __init__(self, **kwargs):
        kwargs.setdefault(
            "help_text",
            f"Optional wall-clock budget; the run times out after it. Up to "
            f"{DEADLINE_MAX_MINUTES:,} minutes (a day).",
        )
        super().__init__(
            label="Deadline (minutes)",
            min_value=1,
            max_value=DEADLINE_MAX_MINUTES,
            required=False,
            error_messages={
                "invalid": "Enter the deadline as a whole number of minutes, e.g. 30.",
                "min_value": "The deadline must be at least 1 minute (or leave it empty).",
                "max_value": (
                    f"The deadline can be at most {DEADLINE_MAX_MINUTES:,} minutes (a day)."
                ),
            },
            **kwargs,
        )


class DeadlineInMinutes(forms.Form):
    """A form with a `deadline_minutes` field: an initial `deadline_seconds` (an earlier
    run's, a schedule's) shows in minutes, rounded up to a whole minute; the cleaned data gains
    `deadline_seconds`, what the services store and send to Coasty."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.initial = dict(self.initial)
        seconds = self.initial.pop("deadline_seconds", None)
        if seconds:
            self.initial.setdefault("deadline_minutes", math.ceil(seconds / 60))

    def clean(self):
        cleaned = super().clean() or self.cleaned_data
        if "deadline_minutes" in cleaned:
            minutes = cleaned["deadline_minutes"]
            cleaned["deadline_seconds"] = minutes * 60 if minutes else None
        return cleaned


class LaunchForm(DeadlineInMinutes):
    launch_token = forms.UUIDField(widget=forms.HiddenInput)
    machine_id = forms.CharField(
        label="Machine",
        max_length=MACHINE_ID_MAX,
        help_text="Pick one of your Coasty machines, or type its id.",
        widget=forms.TextInput(
            attrs={"list": "machines", "autocomplete": "off", "spellcheck": "false"}
        ),
        error_messages={"required": "Choose a machine."},
    )
    task = forms.CharField(
        label="Task",
        max_length=TASK_MAX,
        widget=forms.Textarea(
            attrs={
                "rows": 5,
                "placeholder": "e.g. Open the CRM and export last week's new leads as CSV",
            }
        ),
        help_text="What the agent should do, in plain words.",
        error_messages={"required": "Describe the task for the agent."},
    )
    cua_version = forms.ChoiceField(
        label="Agent engine",
        choices=CuaVersion.choices,
        initial=CuaVersion.V5,
        widget=forms.RadioSelect,
    )
    max_steps = forms.IntegerField(
        label="Maximum steps",
        min_value=1,
        max_value=MAX_STEPS_MAX,
        initial=20,
        help_text="The run stops here. Its maximum cost is held from the wallet at launch; what it does not use comes back when it ends.",
    )
    deadline_minutes = DeadlineMinutesField()
    on_awaiting_human = forms.ChoiceField(
        label="When the agent needs a human",
        choices=OnAwaitingHuman.choices,
        initial=OnAwaitingHuman.PAUSE,
        widget=forms.RadioSelect,
    )
    instructions = forms.CharField(
        label="Extra instructions",
        max_length=INSTRUCTIONS_MAX,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Appended to the agent's base prompt.",
    )
    system_prompt = forms.CharField(
        label="System prompt",
        max_length=SYSTEM_PROMPT_MAX,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Replaces the agent's base prompt entirely. Leave empty unless you know you need it.",
    )

    def __init__(self, *args, machines: list[dict] | None = None, **kwargs):
        """`machines`: Coasty's list (runs.selectors.machines_for_launch). When it is known a
        machine must be one of it; when it could not be fetched, any id is taken as typed."""
        super().__init__(*args, **kwargs)
        self.machines = machines or []

    def clean_machine_id(self):
        value = self.cleaned_data["machine_id"].strip()
        if not value:
            raise forms.ValidationError("Choose a machine.")
        known = [m["id"] for m in self.machines]
        if known and value not in known:
            listed = ", ".join(known[:10]) + (
                f" and {len(known) - 10} more" if len(known) > 10 else ""
            )
            raise forms.ValidationError(
                f"Coasty has no machine “{value}”. Pick one of your machines: {listed}."
            )
        return value

    def clean_task(self):
        value = self.cleaned_data["task"].strip()
        if not value:
            raise forms.ValidationError("Describe the task for the agent.")
        return value


class ResumeForm(forms.Form):
    note = forms.CharField(
        label="Note for the agent",
        max_length=2000,
        required=False,
        widget=forms.Textarea(
            attrs={"rows": 2, "placeholder": "e.g. Solved the captcha; carry on."}
        ),
        help_text="Recorded on the run's timeline.",
    )


class RunFilterForm(forms.Form):
    STATUS_CHOICES = [("", "Any status"), ("live", "Live (not ended)")]

    status = forms.ChoiceField(required=False)
    creator = forms.ChoiceField(required=False, label="Launched by")
    since = FilterDateField(label="From")
    until = FilterDateField(label="To")
    q = forms.CharField(required=False, max_length=200, label="Search tasks")

    def __init__(self, *args, creators=(), **kwargs):
        super().__init__(*args, **kwargs)
        from runs.models import RunStatus

        status_field, creator_field = self.fields["status"], self.fields["creator"]
        assert isinstance(status_field, forms.ChoiceField)
        assert isinstance(creator_field, forms.ChoiceField)
        status_field.choices = self.STATUS_CHOICES + list(RunStatus.choices)
        creator_field.choices = [("", "Anyone")] + [(str(pk), name) for pk, name in creators]

    def clean(self):
        cleaned = super().clean() or self.cleaned_data
        if cleaned.get("since") and cleaned.get("until") and cleaned["since"] > cleaned["until"]:
            self.add_error("until", "The end date is before the start date.")
        return cleaned
