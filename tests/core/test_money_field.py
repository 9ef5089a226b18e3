"""Money fields read amounts as people write them, and refuse what is ambiguous."""

import pytest
from django import forms

from portal.core.forms import MoneyField


class AmountForm(forms.Form):
    amount = MoneyField()


@pytest.mark.parametrize(
    ("typed", "cents"),
    [
        ("25", 2500),
        ("25.00", 2500),
        ("$25", 2500),
        ("$ 25.5", 2550),
        ("1,000", 100000),
        ("$1,000.50", 100050),
        ("12,345,678.9", 1234567890),
        ("US$40", 4000),
        ("  7.05 ", 705),
    ],
)
def test_amounts_written_as_people_write_them(typed, cents):
    form = AmountForm({"amount": typed})

    assert form.is_valid(), form.errors
    assert form.cleaned_data["amount"] == cents


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("1,0", "1,000"),
        ("10,00", "1,000"),
        ("abc", "like 25"),
        ("$", "required"),
        ("1.005", "2 decimal"),
        ("0", "at least"),
        ("-5", "at least"),
        ("NaN", "like 25"),
        ("Infinity", "like 25"),
    ],
)
def test_what_cannot_be_read_is_a_clear_error(typed, says):
    form = AmountForm({"amount": typed})

    assert not form.is_valid()
    assert says in str(form.errors["amount"])
