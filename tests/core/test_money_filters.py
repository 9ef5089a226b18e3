"""The money filters every page prints figures with: one `cents`, and what it says of an
unknown figure."""

import pytest
from django.template import Context, Template

from portal.core.templatetags.money import cents, dollars, signed_cents


@pytest.mark.parametrize(
    ("value", "shown"),
    [(0, "$0.00"), (5, "$0.05"), (123456, "$1,234.56"), ("250", "$2.50"), (-25, "-$0.25")],
)
def test_cents_prints_integer_cents_as_dollars(value, shown):
    assert cents(value).replace("\u2212", "-") == shown


@pytest.mark.parametrize("unknown", [None, "", "n/a", object()])
def test_a_figure_that_is_not_known_is_a_dash_not_zero_dollars(unknown):
    assert cents(unknown) == "—"


def test_signed_cents_carries_its_sign_and_says_nothing_of_zero():
    assert signed_cents(125) == "+$1.25"
    assert signed_cents(-25) == "\u2212$0.25"
    assert signed_cents(0) == ""
    assert signed_cents(None) == ""


def test_dollars_is_what_a_money_field_shows():
    assert dollars(500) == "5.00"
    assert dollars(7) == "0.07"


def test_templates_reach_the_same_filter():
    html = Template("{% load money %}{{ a|cents }} {{ b|cents }}").render(
        Context({"a": 1999, "b": None})
    )
    assert html == "$19.99 —"
