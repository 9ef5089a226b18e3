"""portal.core.reversing: a URL reversed once, then filled in, answers what reverse() does."""

import uuid

import pytest
from django.test import override_settings
from django.urls import clear_script_prefix, reverse, set_script_prefix

from portal.core.reversing import reverse_with_id


@pytest.mark.parametrize(
    "name, args",
    [("run_detail", ()), ("wallet_run_entries", ("research",)), ("wallet_run_entries", ("ops",))],
)
def test_it_answers_what_reverse_answers(name, args):
    for _ in range(3):
        pk = uuid.uuid4()
        assert reverse_with_id(name, pk, *args) == reverse(name, args=[*args, pk])


def test_an_id_given_as_text_is_taken_as_the_converter_takes_it():
    pk = uuid.uuid4()
    assert reverse_with_id("run_detail", str(pk)) == reverse("run_detail", args=[pk])
    with pytest.raises(ValueError):
        reverse_with_id("run_detail", "../../admin")


def test_the_script_prefix_is_the_current_one():
    pk = uuid.uuid4()
    plain = reverse_with_id("run_detail", pk)
    set_script_prefix("/portal/")
    try:
        prefixed = reverse_with_id("run_detail", pk)
        assert prefixed == reverse("run_detail", args=[pk]) == "/portal" + plain
    finally:
        clear_script_prefix()
    assert reverse_with_id("run_detail", pk) == plain


@override_settings(ROOT_URLCONF="tests.core.urls_elsewhere")
def test_another_urlconf_gets_its_own_shape():
    pk = uuid.uuid4()
    assert reverse_with_id("run_detail", pk) == f"/elsewhere/{pk}/"
