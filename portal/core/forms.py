"""Form pieces every app's pages share: the renderer, a bounded filter date, the token form."""

import datetime as dt

from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator
from django.forms.renderers import TemplatesSetting

from portal.core.models import TokenScope


class PortalFormRenderer(TemplatesSetting):
    """Every field renders through templates/forms/field.html: label, input, help, inline errors."""

    field_template_name = "forms/field.html"


class FilterDateField(forms.DateField):
    """An optional From or To date that a list (runs, ledger) is filtered by.

    Bounded to the years a portal's records can have, with room to spare: beyond them a day's
    bounds in the viewer's zone (the day after To, From in a zone ahead of UTC) fall outside
    what a datetime holds, which would be a 500 instead of a form error.
    """

    EARLIEST = dt.date(2000, 1, 1)
    LATEST = dt.date(9000, 12, 31)

    def __init__(self, **kwargs):
        message = f"Pick a date between {self.EARLIEST.year} and {self.LATEST.year}."
        kwargs.setdefault("required", False)
        kwargs.setdefault("widget", forms.DateInput(attrs={"type": "date"}))
        kwargs.setdefault(
            "validators",
            [MinValueValidator(self.EARLIEST, message), MaxValueValidator(self.LATEST, message)],
        )
        super().__init__(**kwargs)


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        label="Token name",
        help_text="What will use it, e.g. “nightly export script”. Only you see it.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    scopes = forms.MultipleChoiceField(
        choices=[(scope.value, f"{scope.value} — {scope.label}") for scope in TokenScope],
        widget=forms.CheckboxSelectMultiple,
        label="What it may do",
        help_text="Give a script only what it needs. Your role in each team still applies.",
        error_messages={"required": "Choose at least one scope."},
    )
    expires_in_days = forms.TypedChoiceField(
        choices=[
            ("", "Never (until revoked)"),
            (7, "In 7 days"),
            (30, "In 30 days"),
            (90, "In 90 days"),
            (365, "In a year"),
        ],
        coerce=int,
        empty_value=None,
        required=False,
        label="Expires",
    )
