"""Form pieces every app's pages share: the renderer, a bounded filter date, money typed by
people, the token form."""

import datetime as dt
import re
from decimal import InvalidOperation

from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator
from django.forms.renderers import TemplatesSetting

from portal.core.models import TokenScope
from portal.core.money import format_cents


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


# "1,000" and "12,345.50": commas only between groups of three digits, so "1,0" is refused
# rather than read as ten.
_GROUPED = re.compile(r"^\d{1,3}(,\d{3})+(\.\d*)?$")


class MoneyField(forms.DecimalField):
    """An amount of money typed as people write it: "25", "25.00", "$25", "1,000", "$1,000.50"
    (US dollars, at most two decimals), cleaned to integer cents.

    Every money field of the portal is one of these, so each accepts the same writing.
    """

    default_error_messages = {
        "invalid": "Enter an amount in dollars, like 25, 25.00, $25 or 1,000.",
    }

    def __init__(self, *, min_cents: int = 1, **kwargs):
        self.min_cents = min_cents
        kwargs.setdefault("widget", forms.TextInput(attrs={"inputmode": "decimal"}))
        super().__init__(max_digits=12, decimal_places=2, **kwargs)

    def to_python(self, value):
        if isinstance(value, str):
            value = self._plain(value)
        return super().to_python(value)

    def _plain(self, text: str) -> str:
        text = text.strip().replace("\u00a0", " ")
        for prefix in ("US$", "USD", "$"):
            if text.upper().startswith(prefix):
                text = text[len(prefix) :].strip()
                break
        if "," in text:
            if not _GROUPED.match(text):
                raise forms.ValidationError(
                    "Write thousands as 1,000 or 1000.", code="invalid_grouping"
                )
            text = text.replace(",", "")
        return text

    def clean(self, value):
        amount = super().clean(value)
        if amount is None:
            return None
        try:
            cents = int((amount * 100).to_integral_exact())
        except InvalidOperation:
            raise forms.ValidationError("Enter an amount in dollars and cents.") from None
        if cents < self.min_cents:
            raise forms.ValidationError(
                f"Enter at least {format_cents(self.min_cents)}."
                if self.min_cents > 0
                else "The amount cannot be negative."
            )
        return cents


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
