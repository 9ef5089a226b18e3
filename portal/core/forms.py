"""Form pieces every app's pages share: the renderer, a bounded filter date, the token form."""

import datetime as dt

from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator
from django.forms.renderers import TemplatesSetting


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
