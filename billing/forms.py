"""Forms for the money pages. People type dollars ("50.00"); the ledger gets integer cents."""

import uuid

from django import forms
from django.conf import settings

from billing.models import TransferKind
from billing.selectors import LedgerFilters
from portal.core.forms import FilterDateField, MoneyField
from portal.core.money import format_cents
from portal.core.query import bounded_int


def idempotency_key_field() -> forms.RegexField:
    """The hidden key that makes a double submit of the form land once."""
    return forms.RegexField(
        regex=r"^[A-Za-z0-9_\-:]{8,100}$",
        widget=forms.HiddenInput,
        error_messages={
            "invalid": "This form is out of date; please start again.",
            "required": "This form is out of date; please start again.",
        },
    )


# The portal's one money field: "$25", "25.00" and "1,000" all read as people mean them.
DollarsField = MoneyField


def fresh_key() -> str:
    return uuid.uuid4().hex


class TopUpForm(forms.Form):
    amount = DollarsField(label="Amount (US$)", help_text="For example 50, 50.00 or 1,000.")
    reference = forms.CharField(
        max_length=255,
        help_text="An invoice or purchase-order number, so the top-up can be traced.",
    )
    idempotency_key = idempotency_key_field()

    def clean_amount(self):
        cents = self.cleaned_data["amount"]
        ceiling = settings.BILLING_TOP_UP_MAX_CENTS
        if cents > ceiling:
            raise forms.ValidationError(f"A top-up can be at most {format_cents(ceiling)}.")
        return cents


class ThresholdForm(forms.Form):
    threshold = DollarsField(
        min_cents=0,
        label="Low-balance alert level (US$)",
        help_text="Below this the team sees a banner and its managers get one email. 0 turns it off.",
    )


class AdjustmentForm(forms.Form):
    amount = DollarsField(label="Amount (US$)")
    direction = forms.ChoiceField(
        choices=[
            ("credit", "Credit the team (give money back)"),
            ("debit", "Debit the team (take money)"),
        ],
        widget=forms.RadioSelect,
    )
    reason = forms.CharField(
        max_length=255, help_text="Recorded on the ledger with the adjustment."
    )
    idempotency_key = idempotency_key_field()

    def clean_amount(self):
        # A correction is bounded like a top-up: a typo (50000 for 50.00) must not move a fortune.
        cents = self.cleaned_data["amount"]
        ceiling = settings.BILLING_TOP_UP_MAX_CENTS
        if cents > ceiling:
            raise forms.ValidationError(
                f"An adjustment can be at most {format_cents(ceiling)}, like a top-up."
            )
        return cents


class ExplainForm(forms.Form):
    note = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3}),
        label="Explanation",
        help_text="Why no money needs to move. Kept with the discrepancy.",
    )


class LedgerFilterForm(forms.Form):
    kind = forms.ChoiceField(choices=[("", "All kinds"), *TransferKind.choices], required=False)
    date_from = FilterDateField(label="From")
    date_to = FilterDateField(label="To")
    run = forms.UUIDField(
        required=False,
        label="Run",
        widget=forms.TextInput(attrs={"placeholder": "run id", "autocomplete": "off"}),
    )

    def clean(self):
        cleaned = super().clean() or self.cleaned_data
        date_from, date_to = cleaned.get("date_from"), cleaned.get("date_to")
        if date_from and date_to and date_from > date_to:
            self.add_error("date_to", "Pick a To date on or after the From date.")
        return cleaned

    def filters(self) -> LedgerFilters:
        """The filters that are valid; an invalid one is ignored (and shown as an error)."""
        if not self.is_bound:
            return LedgerFilters()
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        return LedgerFilters(
            kind=data.get("kind") or "",
            date_from=data.get("date_from"),
            date_to=data.get("date_to"),
            run_id=data.get("run"),
        )

    def query_string(self) -> str:
        """The valid filters as a query string, for pager and CSV links."""
        from urllib.parse import urlencode

        filters = self.filters()
        pairs = {
            "kind": filters.kind,
            "date_from": filters.date_from.isoformat() if filters.date_from else "",
            "date_to": filters.date_to.isoformat() if filters.date_to else "",
            "run": str(filters.run_id) if filters.run_id else "",
        }
        return urlencode({key: value for key, value in pairs.items() if value})


class BudgetForm(forms.Form):
    """A team's spend controls, in dollars; empty means none."""

    monthly_limit = DollarsField(
        label="Monthly budget (US$)",
        min_cents=0,
        required=False,
        help_text="Held plus spent by runs launched in a calendar month. Empty: no budget.",
    )
    approval_above = DollarsField(
        label="Approval above (US$)",
        min_cents=0,
        required=False,
        help_text="Launches that can cost more wait for another manager. Empty: never.",
    )
    alert_percents = forms.CharField(
        label="Alert at (% of the budget)",
        required=False,
        max_length=60,
        help_text="For example 50, 80, 100: the team is told once a month at each.",
    )

    def clean_alert_percents(self) -> list[int]:
        text = self.cleaned_data["alert_percents"] or ""
        values = []
        for part in text.replace(";", ",").split(","):
            part = part.strip().rstrip("%").strip()
            if not part:
                continue
            percent = bounded_int(part, lo=1, hi=100)
            if percent is None:
                raise forms.ValidationError("Give whole percentages from 1 to 100, with commas.")
            values.append(percent)
        if len(values) > 10:
            raise forms.ValidationError("At most 10 alert percentages.")
        return sorted(set(values))


class MemberLimitForm(forms.Form):
    username = forms.CharField(widget=forms.HiddenInput, max_length=150)
    monthly_limit = DollarsField(
        label="Monthly limit (US$)", min_cents=0, required=False, help_text="Empty: no limit."
    )
